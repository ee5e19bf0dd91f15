from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from serendipity.config import PipelineConfig, WorldConfig
from serendipity.media_io import load_image, sample_frames
from serendipity.schema import CLUSTERS_FILE, INTERACTIONS_FILE, ITEMS_FILE, SCHEMAS
from serendipity.tree import ClusterTree
from serendipity.world import Relation, UserSimulator, generate_world
from serendipity.world.render import decode_cue_glyph

SMALL = WorldConfig(items=400, users=60, interactions=6000, branching=(2, 2, 3, 2), media="none", seed=4)


def _read(dataset: Path, name: str):
    return pq.read_table(dataset / name).to_pandas()


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("small") / "dataset"
    generate_world(out, SMALL)
    return out


@pytest.fixture(scope="module")
def simulator(world_dataset: Path) -> UserSimulator:
    return UserSimulator.load(world_dataset)


def test_taxonomy_shape_and_unique_descriptions(world_dataset: Path, test_config: PipelineConfig) -> None:
    branching = test_config.world.branching
    tree = ClusterTree.load(world_dataset)
    expected = np.cumprod(branching)
    assert [len(tree.at_level(level)) for level in range(1, 5)] == expected.tolist()
    descriptions = tree.descriptions()
    assert len(set(descriptions)) == len(descriptions) == int(expected.sum())
    for cluster in tree.at_level(4):
        assert len(tree.children(tree.parent(cluster))) == branching[3]
        assert tree.description(cluster).startswith(tree.description(tree.parent(cluster)) + " / ")
    assert all(len(tree.children(c)) == branching[2] for c in tree.at_level(2))


@pytest.mark.parametrize("name", [CLUSTERS_FILE, ITEMS_FILE, INTERACTIONS_FILE])
def test_tables_match_the_contract_schemas(world_dataset: Path, name: str) -> None:
    assert pq.read_schema(world_dataset / name).equals(SCHEMAS[name], check_metadata=False)


def test_items_agree_with_the_tree_and_media_exist(world_dataset: Path) -> None:
    tree = ClusterTree.load(world_dataset)
    items = _read(world_dataset, ITEMS_FILE)
    for row in items.head(50).itertuples():
        assert tree.path(row.c4) == [row.c1, row.c2, row.c3, row.c4]
    assert items["thumbnail_path"].notna().all() and items["video_path"].notna().all()
    for path in [*items["thumbnail_path"], *items["video_path"]]:
        assert not Path(path).is_absolute() and (world_dataset / path).is_file()
    assert items["title"].str.len().gt(0).all()
    assert 0 < items["text"].isna().sum() < len(items)


def test_logs_are_sessions_over_existing_items(world_dataset: Path) -> None:
    logs = _read(world_dataset, INTERACTIONS_FILE)
    items = _read(world_dataset, ITEMS_FILE).set_index("item_id")
    assert logs["satisfaction"].between(0, 1).all()
    assert (logs.groupby("user_id")["ts"].diff().dropna() >= np.timedelta64(0)).all()
    assert (logs["ts"].to_numpy() >= items.loc[logs["item_id"], "created_at"].to_numpy()).all()
    gaps = logs.groupby("user_id")["ts"].diff().dropna().dt.total_seconds() / 60
    assert gaps.lt(30).mean() > 0.7 and gaps.gt(60).mean() > 0.05  # minutes apart; sessions hours apart
    new_items = items[items["created_at"] > logs["ts"].min()]
    assert len(new_items) > 0 and logs["item_id"].isin(new_items.index).any()


def test_same_seed_same_tables_other_seed_differs(small_world: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_world(again, SMALL)
    for name in (CLUSTERS_FILE, ITEMS_FILE, INTERACTIONS_FILE):
        assert pq.read_table(small_world / name).equals(pq.read_table(again / name))
    other = tmp_path / "other"
    generate_world(other, SMALL.model_copy(update={"seed": 5}))
    assert not pq.read_table(small_world / INTERACTIONS_FILE).equals(pq.read_table(other / INTERACTIONS_FILE))


def test_popularity_is_zipf_like(tmp_path: Path) -> None:
    config = WorldConfig(items=3000, users=400, interactions=60_000, branching=(3, 3, 3, 2), media="none")
    generate_world(tmp_path / "zipf", config)
    counts = np.sort(_read(tmp_path / "zipf", INTERACTIONS_FILE)["item_id"].value_counts().to_numpy())[::-1]
    top_decile_share = counts[: len(counts) // 10].sum() / counts.sum()
    ranks = np.arange(1, 301)
    slope = np.polyfit(np.log(ranks), np.log(counts[:300]), 1)[0]
    assert top_decile_share > 0.4
    assert -1.6 < slope < -0.4


def test_media_popular_leaves_unpopular_items_without_media(tmp_path: Path) -> None:
    config = SMALL.model_copy(update={"media": "popular", "media_popular_share": 0.5})
    generate_world(tmp_path / "popular", config)
    items = _read(tmp_path / "popular", ITEMS_FILE).set_index("item_id")
    impressions = _read(tmp_path / "popular", INTERACTIONS_FILE)["item_id"].value_counts()
    impressions = impressions.reindex(items.index, fill_value=0)
    has_media = items["video_path"].notna()
    assert (has_media == items["thumbnail_path"].notna()).all()
    assert 0 < has_media.sum() < len(items) / 2
    assert impressions[has_media].min() >= impressions[~has_media].max()
    assert 0.5 <= impressions[has_media].sum() / impressions.sum() < 0.6
    assert len(list((tmp_path / "popular" / "media" / "videos").iterdir())) == has_media.sum()


def test_cue_in_thumbnail_and_in_a_window_of_frames(world_dataset: Path, simulator: UserSimulator) -> None:
    items = _read(world_dataset, ITEMS_FILE).head(40)
    truth = pq.read_table(world_dataset / "_world" / "items_truth.parquet").to_pandas().set_index("item_id")
    tree = ClusterTree.load(world_dataset)
    for row in items.itertuples():
        siblings = tree.children(row.c2)
        cue_index = siblings.index(int(simulator.cue_cluster(np.array([row.item_id]))[0]))
        assert (
            decode_cue_glyph(load_image(world_dataset / row.thumbnail_path, 32), len(siblings)) == cue_index
        )
        frames = sample_frames(world_dataset / row.video_path, 16, 32)
        shown = [decode_cue_glyph(frame, len(siblings)) for frame in frames]
        start, length = truth.loc[row.item_id, ["cue_start", "cue_length"]].astype(int)
        assert shown == [cue_index if start <= t < start + length else None for t in range(16)]
        assert 0 < length < len(frames)


def test_more_sampled_frames_catch_the_cue_more_often(world_dataset: Path) -> None:
    items = _read(world_dataset, ITEMS_FILE).head(60)
    siblings = len(ClusterTree.load(world_dataset).children(int(items["c2"].iloc[0])))
    caught = {}
    for count in (1, 2, 4):
        caught[count] = np.mean(
            [
                any(
                    decode_cue_glyph(f, siblings) is not None
                    for f in sample_frames(world_dataset / p, count, 32)
                )
                for p in items["video_path"]
            ]
        )
    assert caught[1] < 0.6 < caught[4]
    assert caught[1] <= caught[2] <= caught[4] and caught[4] > 0.95


def test_title_hint_is_weak(world_dataset: Path, simulator: UserSimulator) -> None:
    items = _read(world_dataset, ITEMS_FILE)
    tree = ClusterTree.load(world_dataset)
    cue_words = [
        tree.description(int(c)).split(" / ")[-1] for c in simulator.cue_cluster(items["item_id"].to_numpy())
    ]
    hinted = np.mean(
        [f"(ft. {word})" in title for word, title in zip(cue_words, items["title"], strict=True)]
    )
    assert 0.0 < hinted < 0.35


def test_simulator_is_vectorised_and_reproducible(simulator: UserSimulator, world_dataset: Path) -> None:
    logs = _read(world_dataset, INTERACTIONS_FILE).head(500)
    users, items = logs["user_id"].to_numpy(), logs["item_id"].to_numpy()
    context = np.r_[-1, items[:-1]]
    first = simulator.satisfaction(users, items, context, np.random.default_rng(3))
    second = simulator.satisfaction(users, items, context, np.random.default_rng(3))
    assert first.shape == (500,) and ((first >= 0) & (first <= 1)).all()
    np.testing.assert_array_equal(first, second)
    no_context = simulator.satisfaction(users, items, None, np.random.default_rng(3))
    assert not np.array_equal(first, no_context)
    assert set(np.unique(simulator.relation(items, context))) <= {int(r) for r in Relation}
    assert ((simulator.visual_richness(items) >= 0) & (simulator.visual_richness(items) <= 1)).all()
    with pytest.raises(ValueError, match="unknown item ids"):
        simulator.satisfaction(users[:1], np.array([10**9]), None, np.random.default_rng(0))


def test_cue_jumps_beat_similar_items_on_average_but_not_for_everyone(
    simulator: UserSimulator, world_dataset: Path
) -> None:
    """A property of the fixed rules, measured on the simulator with the same users and contexts."""
    items = _read(world_dataset, ITEMS_FILE)
    rng = np.random.default_rng(0)
    contexts = items.sample(2000, replace=True, random_state=1)["item_id"].to_numpy()
    users = rng.choice(_read(world_dataset, INTERACTIONS_FILE)["user_id"].unique(), len(contexts))
    by_l3 = items.groupby("c3")["item_id"].apply(np.asarray)
    context_l3 = items.set_index("item_id").loc[contexts, "c3"].to_numpy()
    similar = np.array([rng.choice(by_l3[c]) for c in context_l3])
    cue = np.array([rng.choice(by_l3[c]) for c in simulator.cue_cluster(contexts)])
    assert (simulator.relation(cue, contexts) == Relation.SERENDIPITOUS_CUE).all()
    assert (simulator.relation(similar, contexts) == Relation.SIMILAR).all()
    cue_draws = simulator.satisfaction(users, cue, contexts, rng)
    similar_draws = simulator.satisfaction(users, similar, contexts, rng)
    assert cue_draws.mean() > similar_draws.mean()
    gap = simulator.expected_satisfaction(users, cue, contexts) - simulator.expected_satisfaction(
        users, similar, contexts
    )
    assert (gap < 0).any() and gap.mean() > 0
    closed = simulator.openness(users) < 0.25
    assert gap[closed].mean() < gap[~closed].mean()


def test_simulator_load_names_the_missing_hidden_state(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"_world.*items_truth.parquet"):
        UserSimulator.load(tmp_path)


def test_too_few_items_for_the_tree_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="world.items=10 is below the 24 leaf clusters"):
        generate_world(tmp_path / "w", SMALL.model_copy(update={"items": 10}))
    assert not (tmp_path / "w").exists()

"""Dataset adapters: the real public datasets and a user's own files into the data contract."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from serendipity.datasets.amazon import META_FILE, REVIEWS_FILE, ingest_amazon
from serendipity.datasets.common import (
    ID_MAP_ITEMS_FILE,
    ID_MAP_USERS_FILE,
    INGEST_QUARANTINE_FILE,
    IngestError,
    IngestSummary,
)
from serendipity.datasets.generic import ingest_generic
from serendipity.datasets.kuairec import CAPTIONS_FILE, ingest_kuairec
from serendipity.datasets.movielens import ingest_movielens
from serendipity.datasets.paths import PAD_LABEL, build_tree, normalize_path
from serendipity.schema import (
    CLUSTERS_FILE,
    INTERACTIONS_FILE,
    ITEMS_FILE,
    LEVEL_COLUMNS,
    QUARANTINE_REASON,
    QUARANTINE_SOURCE,
    SCHEMAS,
    TREE_INFO_FILE,
)
from serendipity.tree import ClusterTree
from serendipity.validation import validate_dataset

MOVIELENS = "movielens-ml-latest-small"
KUAIREC = "kuairec"
AMAZON = "amazon2018-magazine-subscriptions"


def read(out_dir: Path, file: str) -> pd.DataFrame:
    return pq.read_table(out_dir / file).to_pandas()


def quarantined(out_dir: Path, source_file: str) -> pd.DataFrame:
    frame = read(out_dir, INGEST_QUARANTINE_FILE)
    return frame[frame[QUARANTINE_SOURCE] == source_file]


def assert_contract(out_dir: Path) -> None:
    """Exact Arrow schemas, a valid 4-level tree whose paths hold every item, sane interactions."""
    for file, schema in SCHEMAS.items():
        assert pq.read_schema(out_dir / file).remove_metadata().equals(schema), file
    tree = ClusterTree.load(out_dir)  # raises on duplicate descriptions or broken parent links
    clusters = read(out_dir, CLUSTERS_FILE)
    assert clusters["description"].is_unique
    assert sorted(clusters["level"].unique()) == [1, 2, 3, 4]
    assert all(tree.children(cluster) for cluster in tree.at_level(3))
    items = read(out_dir, ITEMS_FILE)
    assert items["item_id"].is_unique
    for path in items[list(LEVEL_COLUMNS)].drop_duplicates().itertuples(index=False):
        assert tree.path(path[-1]) == list(path)
    interactions = read(out_dir, INTERACTIONS_FILE)
    assert interactions["satisfaction"].between(0.0, 1.0).all()
    assert interactions["item_id"].isin(items["item_id"]).all()
    assert not read(out_dir, INGEST_QUARANTINE_FILE)[QUARANTINE_REASON].isna().any()


def assert_validates(out_dir: Path) -> None:
    problems = validate_dataset(out_dir).report.problems
    assert problems == [], [problem.message for problem in problems]


def assert_counts(
    summary: IngestSummary, out_dir: Path, source_file: str, source_rows: int, converted: int
) -> None:
    assert summary.source_rows[source_file] == source_rows
    assert converted + len(quarantined(out_dir, source_file)) == source_rows


# --- MovieLens --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def movielens(shared_datasets: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, IngestSummary]:
    out_dir = tmp_path_factory.mktemp("movielens") / "dataset"
    return out_dir, ingest_movielens(shared_datasets / MOVIELENS, out_dir)


@pytest.mark.realdata
def test_movielens_converts_ratings_and_movies(movielens, shared_datasets: Path) -> None:
    out_dir, summary = movielens
    source = shared_datasets / MOVIELENS
    ratings = pd.read_csv(source / "ratings.csv")
    movies = pd.read_csv(source / "movies.csv")
    interactions, items = read(out_dir, INTERACTIONS_FILE), read(out_dir, ITEMS_FILE)
    assert_contract(out_dir)
    assert_counts(summary, out_dir, "ratings.csv", len(ratings), len(interactions))
    assert_counts(summary, out_dir, "movies.csv", len(movies), len(items))
    joined = interactions.merge(
        ratings.assign(ts=pd.to_datetime(ratings["timestamp"], unit="s", utc=True)),
        left_on=["user_id", "item_id", "ts"],
        right_on=["userId", "movieId", "ts"],
    )
    assert len(joined) == len(interactions)
    assert (joined["satisfaction"] - (joined["rating"] - 0.5) / 4.5).abs().max() < 1e-12
    first_rating = pd.to_datetime(ratings.groupby("movieId")["timestamp"].min(), unit="s", utc=True)
    rated = items[items["item_id"].isin(first_rating.index)].set_index("item_id")["created_at"]
    assert (rated <= first_rating.loc[rated.index]).all()  # the first tag may come earlier
    assert items["thumbnail_path"].isna().all() and items["video_path"].isna().all()
    toy_story = items.set_index("item_id").loc[1]
    assert toy_story["title"] == "Toy Story (1995)" and "Animation" in toy_story["text"]


@pytest.mark.realdata
def test_movielens_tree_is_a_marked_placeholder(movielens) -> None:
    out_dir, summary = movielens
    assert json.loads((out_dir / TREE_INFO_FILE).read_text()) == {"placeholder": True, "source": "movielens"}
    assert summary.placeholder_tree
    tree = ClusterTree.load(out_dir)
    assert "Comedy" in tree.descriptions(tree.at_level(1))
    for level in (2, 3, 4):
        assert all(len(tree.children(cluster)) == 1 for cluster in tree.at_level(level - 1))


@pytest.mark.realdata
def test_movielens_validates(movielens) -> None:
    assert_validates(movielens[0])


# --- KuaiRec ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kuairec(shared_datasets: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, IngestSummary]:
    out_dir = tmp_path_factory.mktemp("kuairec") / "dataset"
    return out_dir, ingest_kuairec(shared_datasets / KUAIREC, out_dir)


def kuairec_records(path: Path) -> pd.DataFrame:
    """The captions file read independently: bare carriage returns inside captions joined back."""
    text = path.read_bytes().decode("utf-8").replace("\r", " ")
    return pd.DataFrame(list(csv.DictReader(io.StringIO(text))))


@pytest.mark.realdata
def test_kuairec_items_and_real_tree(kuairec, shared_datasets: Path) -> None:
    out_dir, summary = kuairec
    records = kuairec_records(shared_datasets / KUAIREC / CAPTIONS_FILE)
    items = read(out_dir, ITEMS_FILE)
    assert_contract(out_dir)
    assert_counts(summary, out_dir, CAPTIONS_FILE, len(records), len(items))
    unknown_first = records["first_level_category_name"] == "UNKNOWN"
    assert set(items["item_id"]) == set(records.loc[~unknown_first, "video_id"].astype(int))
    assert (quarantined(out_dir, CAPTIONS_FILE)[QUARANTINE_REASON] == "first-level category is UNKNOWN").all()
    tree = ClusterTree.load(out_dir)
    known_first = set(records.loc[~unknown_first, "first_level_category_name"])
    assert set(tree.descriptions(tree.at_level(1))) == known_first
    assert all(len(tree.children(cluster)) == 1 for cluster in tree.at_level(3))
    by_id = items.set_index("item_id")
    assert by_id.loc[1378, "title"].endswith("！”")  # the caption split by a carriage return, joined back
    names = ["first_level_category_name", "second_level_category_name", "third_level_category_name"]
    full = records[(records[names] != "UNKNOWN").all(axis=1)].iloc[0]
    path = tree.path(int(by_id.loc[int(full["video_id"]), "c4"]))
    assert [tree.description(c).split(" > ")[-1] for c in path] == [*full[names], PAD_LABEL]
    partial = records[(records[names[0]] != "UNKNOWN") & (records[names[1]] == "UNKNOWN")].iloc[0]
    path = tree.path(int(by_id.loc[int(partial["video_id"]), "c4"]))
    assert [tree.description(c).split(" > ")[-1] for c in path] == [partial[names[0]], *[PAD_LABEL] * 3]
    assert not (out_dir / TREE_INFO_FILE).exists()
    assert read(out_dir, INTERACTIONS_FILE).empty


@pytest.mark.realdata
def test_kuairec_validates(kuairec) -> None:
    assert_validates(kuairec[0])


# --- Amazon -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def amazon(shared_datasets: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, IngestSummary]:
    out_dir = tmp_path_factory.mktemp("amazon") / "dataset"
    return out_dir, ingest_amazon(shared_datasets / AMAZON, out_dir)


@pytest.mark.realdata
def test_amazon_reviews_meta_and_id_maps(amazon, shared_datasets: Path) -> None:
    out_dir, summary = amazon
    reviews = pd.read_json(shared_datasets / AMAZON / REVIEWS_FILE, lines=True)
    meta = pd.read_json(shared_datasets / AMAZON / META_FILE, lines=True)
    items, interactions = read(out_dir, ITEMS_FILE), read(out_dir, INTERACTIONS_FILE)
    assert_contract(out_dir)
    assert_counts(summary, out_dir, REVIEWS_FILE, len(reviews), len(interactions))
    assert_counts(summary, out_dir, META_FILE, len(meta), len(items))
    assert len(items) == meta["asin"].nunique()
    item_map, user_map = read(out_dir, ID_MAP_ITEMS_FILE), read(out_dir, ID_MAP_USERS_FILE)
    assert item_map["id"].is_unique and item_map["source_id"].is_unique
    assert set(item_map["id"]) == set(items["item_id"])
    joined = (
        interactions.merge(item_map.rename(columns={"id": "item_id", "source_id": "asin"}), on="item_id")
        .merge(user_map.rename(columns={"id": "user_id", "source_id": "reviewerID"}), on="user_id")
        .merge(reviews.drop_duplicates(["reviewerID", "asin", "unixReviewTime"]), on=["reviewerID", "asin"])
    )
    joined = joined[joined["ts"] == pd.to_datetime(joined["unixReviewTime"], unit="s", utc=True)]
    assert len(joined) == len(interactions)
    assert (joined["satisfaction"] == (joined["overall"] - 1) / 4).all()


@pytest.mark.realdata
def test_amazon_tree_keeps_real_category_paths(amazon, shared_datasets: Path) -> None:
    out_dir, _ = amazon
    meta = pd.read_json(shared_datasets / AMAZON / META_FILE, lines=True).drop_duplicates("asin")
    item_map = read(out_dir, ID_MAP_ITEMS_FILE).set_index("source_id")["id"]
    items = read(out_dir, ITEMS_FILE).set_index("item_id")
    tree = ClusterTree.load(out_dir)
    deep = meta[meta["category"].map(len) == 5].iloc[0]
    leaf = int(items.loc[item_map[deep["asin"]], "c4"])
    assert [tree.description(c).split(" > ")[-1] for c in tree.path(leaf)] == deep["category"][:4]
    shallow = meta[meta["category"].map(len) == 2].iloc[0]
    leaf = int(items.loc[item_map[shallow["asin"]], "c4"])
    assert tree.description(tree.path(leaf)[1]).split(" > ")[-1] == shallow["category"][1]
    assert tree.description(leaf).endswith(f"{PAD_LABEL} > {PAD_LABEL}")


@pytest.mark.realdata
def test_amazon_rerun_keeps_ids_and_tables(amazon, shared_datasets: Path) -> None:
    out_dir, _ = amazon
    before = {
        file: pq.read_table(out_dir / file) for file in (*SCHEMAS, ID_MAP_ITEMS_FILE, ID_MAP_USERS_FILE)
    }
    ingest_amazon(shared_datasets / AMAZON, out_dir)
    for file, table in before.items():
        assert pq.read_table(out_dir / file).equals(table), file


@pytest.mark.realdata
def test_amazon_validates(amazon) -> None:
    assert_validates(amazon[0])


# --- generic ----------------------------------------------------------------------------------


@pytest.fixture()
def generic_source(repo_root: Path) -> Path:
    return repo_root / "tests" / "data" / "generic"


@pytest.fixture()
def example_mapping(repo_root: Path) -> dict:
    return yaml.safe_load((repo_root / "configs" / "generic_example.yaml").read_text())


def write_mapping(tmp_path: Path, mapping: dict) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(mapping))
    return path


def test_generic_example_mapping(generic_source: Path, repo_root: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "dataset"
    summary = ingest_generic(generic_source, out_dir, repo_root / "configs" / "generic_example.yaml")
    assert_contract(out_dir)
    assert_validates(out_dir)
    items, interactions = read(out_dir, ITEMS_FILE), read(out_dir, INTERACTIONS_FILE)
    assert_counts(summary, out_dir, "items.csv", 9, len(items))
    assert_counts(summary, out_dir, "events.csv", 11, len(interactions))
    item_ids = read(out_dir, ID_MAP_ITEMS_FILE).set_index("source_id")["id"]
    assert sorted(item_ids.loc[["v001", "v002", "v003", "v004", "v005"]]) == sorted(items["item_id"])
    assert len(interactions) == 4 and interactions["satisfaction"].max() == 1.0  # watch ratio 1.7 capped
    assert interactions["impression"].tolist().count(None) == 1
    reasons = set(quarantined(out_dir, "events.csv")[QUARANTINE_REASON])
    assert reasons == {
        "unparsable timestamp",
        "empty user_id",
        "item_id not among the converted items",
        "satisfaction missing or invalid for transform watch_ratio",
        "duplicate (user_id, item_id, ts) (first kept)",
    }
    by_source = items.set_index(items["item_id"].map({v: k for k, v in item_ids.items()}))
    assert (out_dir / by_source.loc["v001", "thumbnail_path"]).is_file()
    assert by_source.loc["v003", "thumbnail_path"] is None  # the file does not exist
    assert by_source.loc["v003", "created_at"] == pd.Timestamp(1704276000, unit="s", tz="UTC")
    tree = ClusterTree.load(out_dir)
    assert tree.description(int(by_source.loc["v002", "c3"])) == "Retrievers"
    assert not (out_dir / TREE_INFO_FILE).exists()


def test_generic_rerun_is_identical(generic_source: Path, repo_root: Path, tmp_path: Path) -> None:
    mapping = repo_root / "configs" / "generic_example.yaml"
    first, second = tmp_path / "first", tmp_path / "second"
    ingest_generic(generic_source, first, mapping)
    ingest_generic(generic_source, second, mapping)
    ingest_generic(generic_source, second, mapping)
    for file in (*SCHEMAS, ID_MAP_ITEMS_FILE, ID_MAP_USERS_FILE, INGEST_QUARANTINE_FILE):
        assert pq.read_table(first / file).equals(pq.read_table(second / file)), file


def test_generic_parquet_without_categories_gets_placeholder(
    generic_source: Path, example_mapping: dict, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("items", "events"):
        pd.read_csv(generic_source / f"{name}.csv", dtype=str).to_parquet(source / f"{name}.parquet")
    example_mapping["items"]["file"] = "items.parquet"
    example_mapping["interactions"]["file"] = "events.parquet"
    del example_mapping["items"]["category_columns"]
    del example_mapping["items"]["columns"]["thumbnail_path"]
    out_dir = tmp_path / "dataset"
    summary = ingest_generic(source, out_dir, write_mapping(tmp_path, example_mapping))
    assert_contract(out_dir)
    assert json.loads((out_dir / TREE_INFO_FILE).read_text())["placeholder"] is True
    assert summary.items == 6  # v007 (no category) is kept when there is no category column
    assert ClusterTree.load(out_dir).descriptions([1]) == ["all items"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda m: m["items"]["columns"].update(descripton="about"), "items.columns.descripton: unknown key"),
        (lambda m: m.update(colour="red"), "colour: unknown key"),
        (lambda m: m["interactions"].update(satisfaction_transform="rating:5:1"), "satisfaction_transform"),
        (lambda m: m["interactions"].update(satisfaction_transform="log"), "unknown satisfaction transform"),
        (lambda m: m["interactions"]["columns"].pop("ts"), "interactions.columns.ts: Field required"),
    ],
)
def test_generic_bad_mapping_names_the_key(
    change, expected: str, generic_source: Path, example_mapping: dict, tmp_path: Path
) -> None:
    change(example_mapping)
    with pytest.raises(IngestError, match="invalid mapping") as error:
        ingest_generic(generic_source, tmp_path / "dataset", write_mapping(tmp_path, example_mapping))
    assert expected in str(error.value)
    assert not (tmp_path / "dataset").exists()


def test_generic_missing_column_names_file_and_column(
    generic_source: Path, example_mapping: dict, tmp_path: Path
) -> None:
    example_mapping["interactions"]["columns"]["satisfaction"] = "watch_time"
    with pytest.raises(
        IngestError, match=r"events\.csv: column 'watch_time' \(mapped to satisfaction\) not found"
    ):
        ingest_generic(generic_source, tmp_path / "dataset", write_mapping(tmp_path, example_mapping))
    example_mapping["interactions"]["columns"]["satisfaction"] = "watch_ratio"
    example_mapping["items"]["category_columns"] = ["topic", "genre"]
    with pytest.raises(IngestError, match=r"items\.csv: column 'genre' \(mapped to category_columns\[1\]\)"):
        ingest_generic(generic_source, tmp_path / "dataset", write_mapping(tmp_path, example_mapping))


def test_output_dir_guards(generic_source: Path, repo_root: Path, tmp_path: Path) -> None:
    mapping = repo_root / "configs" / "generic_example.yaml"
    with pytest.raises(IngestError, match="must not contain or sit inside the source"):
        ingest_generic(generic_source, generic_source / "dataset", mapping)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("not a dataset")
    with pytest.raises(IngestError, match="holds no dataset"):
        ingest_generic(generic_source, occupied, mapping)
    assert (occupied / "notes.txt").exists()


def test_cli_ingest_generic(generic_source: Path, repo_root: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from serendipity.app.cli import app

    mapping = repo_root / "configs" / "generic_example.yaml"
    args = ["ingest", "generic", "--source", str(generic_source), "--out", str(tmp_path / "d"), "--mapping"]
    result = CliRunner().invoke(app, [*args, str(mapping)])
    assert result.exit_code == 0, result.output
    assert "events.csv" in result.output and (tmp_path / "d" / ITEMS_FILE).is_file()
    bad = tmp_path / "bad.yaml"
    bad.write_text(mapping.read_text() + "extra_key: 1\n")
    result = CliRunner().invoke(app, [*args, str(bad)])
    assert result.exit_code == 2 and "extra_key: unknown key" in result.output


def test_build_tree_pads_truncates_and_disambiguates() -> None:
    paths = [
        normalize_path(["Sports", "Running", "Trail", "Ultra", "Mountain"]),
        normalize_path(["Sports", "Running"]),
        normalize_path(["Music", "Trail"]),
    ]
    clusters, levels = build_tree(paths)
    tree = ClusterTree.from_frame(clusters)
    assert paths[0] == ("Sports", "Running", "Trail", "Ultra")
    assert [tree.description(c) for c in levels.iloc[1]] == [
        "Sports",
        "Running",
        f"Running > {PAD_LABEL}",
        f"Running > {PAD_LABEL} > {PAD_LABEL}",
    ]
    assert tree.description(int(levels.iloc[0]["c3"])) == "Running > Trail"
    assert tree.description(int(levels.iloc[2]["c2"])) == "Music > Trail"
    assert build_tree(list(reversed(paths)))[0].equals(clusters)  # ids do not depend on item order

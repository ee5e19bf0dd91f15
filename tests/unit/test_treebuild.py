"""Tree building library: balanced clustering, descriptions, tables, the offline text model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from serendipity.io import write_json_atomic
from serendipity.schema import NUM_LEVELS
from serendipity.tree import ClusterTree
from serendipity.treebuild import (
    TEXT_DIM,
    balance_report,
    balanced_kmeans,
    cluster_ids,
    clusters_table,
    combine_features,
    describe_tree,
    embed_texts,
    leaf_levels,
    leaf_term_weights,
    split_parent_group,
    tokenize,
)
from serendipity.treebuild.embed import IMAGE_DIM, embed_items, image_features
from serendipity.treebuild.quality import DEFINITION, format_name_quality, name_quality
from serendipity.treebuild.tables import BalanceReport, format_balance


def _skewed_blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three topics of very unequal size, Zipf-like traffic with a few very popular items."""
    rng = np.random.default_rng(seed)
    sizes = [500, 250, 50]
    centers = rng.normal(size=(3, 8)) * 4
    features = np.vstack([rng.normal(size=(n, 8)) + c for n, c in zip(sizes, centers, strict=True)])
    traffic = np.minimum(rng.zipf(1.7, size=len(features)), 400).astype(float)
    return features, traffic, np.repeat(np.arange(3), sizes)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_balanced_kmeans_gives_near_equal_traffic_on_skewed_traffic(k: int) -> None:
    features, traffic, _ = _skewed_blobs()
    tolerance = 0.05
    labels = balanced_kmeans(features, traffic, k, seed=0, tolerance=tolerance)
    shares = np.bincount(labels, weights=traffic, minlength=k) / traffic.sum()
    assert sorted(set(labels)) == list(range(k))
    # no child above (1 + tol)/k; hence none below (1 - (k-1) tol)/k; plus one item of granularity
    granularity = traffic.max() / traffic.sum()
    assert shares.max() <= (1 + tolerance) / k + granularity
    assert shares.min() >= (1 - (k - 1) * tolerance) / k - granularity
    assert shares[0] == shares.max()  # child 0 is the heaviest


def test_plain_kmeans_would_be_unbalanced_on_the_same_data() -> None:
    """The capacity step is what balances: the same data's natural clusters are far from equal."""
    features, traffic, truth = _skewed_blobs()
    natural = np.bincount(truth, weights=traffic) / traffic.sum()
    balanced = np.bincount(balanced_kmeans(features, traffic, 3, seed=0), weights=traffic) / traffic.sum()
    assert natural.max() / natural.min() > 3
    assert balanced.max() / balanced.min() < 1.2


def test_balanced_kmeans_keeps_topics_together_when_they_are_already_balanced() -> None:
    features, _, truth = _skewed_blobs()
    traffic = np.array([1.0, 2.0, 10.0])[truth]  # 500*1 = 250*2 = 50*10
    labels = balanced_kmeans(features, traffic, 3, seed=0)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, labels) > 0.95


def test_balanced_kmeans_is_deterministic_per_seed() -> None:
    features, traffic, _ = _skewed_blobs()
    first = balanced_kmeans(features, traffic, 3, seed=7)
    assert np.array_equal(first, balanced_kmeans(features, traffic, 3, seed=7))


def test_balanced_kmeans_edge_cases() -> None:
    features = np.eye(3)
    assert sorted(balanced_kmeans(features, np.zeros(3), 5)) == [0, 1, 2]  # no traffic: split by count
    assert list(balanced_kmeans(features[:1], np.ones(1), 3)) == [0]
    # one item holding 90% of the traffic: every child still gets an item
    labels = balanced_kmeans(np.random.default_rng(0).normal(size=(20, 4)), np.r_[900.0, np.ones(19)], 3)
    assert set(labels) == {0, 1, 2}
    with pytest.raises(ValueError, match="non-negative"):
        balanced_kmeans(features, np.array([1.0, -1.0, 1.0]), 2)


def test_combine_features_imputes_missing_images_with_group_mean() -> None:
    text = np.ones((3, 2))
    image = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    combined = combine_features(text, image, np.array([True, True, False]), image_weight=2.0)
    assert combined.shape == (3, 4)
    assert np.allclose(combined[2, 2:], [1.0, 1.0])
    assert combine_features(text, image, np.zeros(3, dtype=bool), 2.0).shape == (3, 2)


def test_split_parent_group_extends_paths_in_item_order() -> None:
    rng = np.random.default_rng(1)
    group = pd.DataFrame(
        {
            "item_id": np.arange(30)[::-1],
            "path": "2.1",
            "traffic": rng.integers(1, 50, size=30).astype(float),
            "text_embedding": list(rng.normal(size=(30, 6))),
            "image_embedding": list(np.zeros((30, 3))),
            "has_image": False,
        }
    )
    result = split_parent_group(group, 2, seed=0)
    assert list(result["item_id"]) == list(range(30))
    assert set(result["path"]) == {"2.1.0", "2.1.1"}


def _toy_leaves() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = []
    themes = {
        "0.0.0.0": "comedy romance paris",
        "0.0.0.1": "comedy romance london",
        "0.0.1.0": "comedy slapstick dogs",
        "0.0.1.1": "comedy slapstick cats",
        "1.0.0.0": "horror zombies night",
        "1.0.0.1": "horror zombies day",
        "1.0.1.0": "horror ghosts house",
        "1.0.1.1": "horror ghosts house",  # identical leaves: must still get unique names
    }
    for path, words in themes.items():
        for item in range(5):
            rows.append({"path": path, "traffic": float(item), "document": f"{words}. item{item}"})
    items = pd.DataFrame(rows)
    leaves = items.groupby("path", as_index=False).agg(
        weight=("traffic", lambda t: float((1 + np.log1p(t)).sum()))
    )
    return leaf_term_weights(items), leaves


def test_descriptions_are_unique_readable_paths() -> None:
    term_weights, leaves = _toy_leaves()
    descriptions = describe_tree(term_weights, leaves, NUM_LEVELS)
    assert len(set(descriptions.values())) == len(descriptions) == 2 + 2 + 4 + 8
    assert {descriptions["0"], descriptions["1"]} == {"Comedy", "Horror"}
    assert descriptions["0.0.0.0"].startswith(descriptions["0.0.0"] + " / ")
    assert descriptions["0.0.0.0"].endswith("Paris")
    assert descriptions["0.0.0.1"].endswith("London")
    for path, description in descriptions.items():
        assert description.count(" / ") == path.count(".")


def test_a_word_pair_names_a_cluster_when_it_covers_the_word() -> None:
    items = pd.DataFrame(
        {
            "path": ["0"] * 4 + ["1"] * 4,
            "traffic": 1.0,
            "document": [f"High School, year{i}" for i in "abcd"]
            + [f"space {w}" for w in ("war", "opera", "x", "y")],
        }
    )
    leaves = pd.DataFrame({"path": ["0", "1"], "weight": [4.0, 4.0]})
    descriptions = describe_tree(leaf_term_weights(items), leaves, num_levels=1)
    assert descriptions == {"0": "High School", "1": "Space"}


def _documents(path: str, counts: dict[str, int], size: int = 20) -> list[dict[str, object]]:
    """``size`` items of cluster ``path``; the first ``counts[word]`` of them carry ``word``."""
    return [
        {"path": path, "traffic": 0.0, "document": " ".join(w for w, n in counts.items() if i < n) or "plain"}
        for i in range(size)
    ]


def _describe(rows: list[dict[str, object]], num_levels: int) -> dict[str, str]:
    items = pd.DataFrame(rows)
    leaves = items.groupby("path", as_index=False).agg(weight=("traffic", lambda t: float(len(t))))
    return describe_tree(leaf_term_weights(items), leaves, num_levels)


def test_a_top_level_name_is_the_dominant_theme_not_a_distinctive_minor_term() -> None:
    # cluster 0: half of it is drama (slightly more than the catalogue's 40%), a fifth is noir (only here)
    rows = _documents("0", {"drama": 10, "noir": 4}) + _documents("1", {"drama": 6, "comedy": 14})
    assert _describe(rows, num_levels=1) == {"0": "Drama", "1": "Comedy"}


def test_deeper_names_weigh_terms_by_class_tfidf_and_skip_the_parents_terms() -> None:
    # under "Western": child 0 is 55% outlaw (its siblings together: 50%) and 10% "wife" (only here)
    rows = _documents("0.0", {"western": 20, "outlaw": 11, "wife": 2}) + _documents(
        "0.1", {"western": 20, "outlaw": 9, "sheriff": 12}
    )
    descriptions = _describe(rows, num_levels=2)
    assert descriptions == {"0": "Western", "0.0": "Western / Outlaw", "0.1": "Western / Sheriff"}


def test_a_term_its_siblings_have_more_of_ranks_after_over_represented_ones() -> None:
    # 0.1 is named first (opera); "drama" would still score best in 0.0, but 0.0 has less of it (60%)
    # than the two siblings together (70%), so the heist films are named by what they have more of
    rows = _documents("0.0", {"heist": 2, "western": 20, "drama": 12}) + _documents(
        "0.1", {"opera": 20, "western": 20, "drama": 16}
    )
    descriptions = _describe(rows, num_levels=2)
    assert descriptions == {"0": "Western", "0.0": "Western / Heist", "0.1": "Western / Opera"}


def test_name_quality_is_own_over_other_cosine_per_level() -> None:
    axes = {"A": [1.0, 0.0], "B": [0.0, 1.0], "A / X": [0.8, 0.6], "B / Y": [0.6, 0.8]}
    descriptions = {"0": "A", "1": "B", "0.0": "A / X", "1.0": "B / Y"}
    paths = ["0.0", "0.0", "1.0"]
    vectors = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    quality = name_quality(
        descriptions, paths, vectors, encode=lambda names: np.array([axes[n] for n in names])
    )
    own = [np.mean([1.0, 0.6]), 1.0]  # "A" with items 0, 1; "B" with item 2
    other = [0.0, np.mean([0.0, 0.8])]
    assert quality.levels["1"].ratio == pytest.approx(np.mean(own) / np.mean(other))
    assert quality.levels["2"].clusters == 2
    assert quality.overall == pytest.approx(np.mean([quality.levels["1"].ratio, quality.levels["2"].ratio]))
    assert f"overall name quality: {quality.overall:.4f}" in format_name_quality(quality)
    # tree_info.json's name_quality keeps the keys and values it had as a dict
    assert quality.to_json() == {
        "overall": quality.overall,
        "levels": {
            level: {"clusters": s.clusters, "own_cosine": s.own_cosine, "other_cosine": s.other_cosine,
                    "ratio": s.ratio}
            for level, s in quality.levels.items()
        },
        "items": 3,
        "definition": DEFINITION,
    }  # fmt: skip


def test_name_quality_prefers_names_that_describe_their_members() -> None:
    documents = {
        "0": ["a romantic comedy set in Paris", "two lovers meet in a cafe", "a wedding goes wrong"],
        "1": ["zombies attack a small town", "a haunted house at night", "a ghost haunts a family"],
    }
    paths = [path for path, texts in documents.items() for _ in texts]
    vectors = embed_texts([text for texts in documents.values() for text in texts])
    fitting = name_quality({"0": "Romance", "1": "Horror"}, paths, vectors)
    swapped = name_quality({"0": "Horror", "1": "Romance"}, paths, vectors)
    assert fitting.overall is not None and swapped.overall is not None
    assert fitting.overall > 1.0 > swapped.overall


def test_tokenize_drops_stop_words_numbers_and_keeps_hyphenated_terms() -> None:
    assert tokenize("Toy Story (1995). Genres: Sci-Fi, Comedy; the an") == {
        "toy",
        "story",
        "toy story",
        "sci-fi",
        "comedy",
    }
    assert tokenize(None) == set()


def test_tables_build_a_valid_cluster_tree_and_balance_report() -> None:
    term_weights, leaves = _toy_leaves()
    descriptions = describe_tree(term_weights, leaves, NUM_LEVELS)
    ids = cluster_ids(list(leaves["path"]))
    tree = ClusterTree.from_frame(clusters_table(ids, descriptions).to_pandas())
    assert [len(tree.at_level(level)) for level in range(1, 5)] == [2, 2, 4, 8]
    levels = leaf_levels(ids)
    row = levels.set_index("leaf_path").loc["1.0.1.1"]
    assert tree.path(int(row["c4"])) == [int(row[f"c{level}"]) for level in range(1, 5)]

    report = balance_report(
        pd.DataFrame({"path": ["0.0.0.0", "0.0.0.1", "1.0.0.0"], "traffic": [1.0, 1.0, 2.0]})
    )
    assert report.levels["1"].max_min_ratio == 1.0
    assert report.levels["4"].max_min_ratio == 2.0
    assert report.levels["4"].worst_sibling_ratio == 1.0
    assert report.levels["4"].cv == pytest.approx(np.std([1, 1, 2]) / np.mean([1, 1, 2]))


def test_balance_json_is_written_as_the_untyped_report_was(tmp_path) -> None:
    report = balance_report(pd.DataFrame({"path": ["0.0.0.0", "1.0.0.0"], "traffic": [0.0, 2.0]}))
    inf = float("inf")  # a zero-traffic cluster: written as JSON's Infinity, as before
    lower = {"clusters": 2, "max_share": 1.0, "min_share": 0.0, "max_min_ratio": inf, "cv": 1.0,
             "worst_sibling_ratio": 1.0}  # fmt: skip
    levels = {"1": {**lower, "worst_sibling_ratio": inf}, "2": lower, "3": lower, "4": lower}
    old = write_json_atomic({"total_traffic": 2.0, "levels": levels}, tmp_path / "old.json")
    written = report.write(tmp_path / "new.json")
    assert written.read_bytes() == old.read_bytes()
    assert BalanceReport.read(written) == report
    assert "worst_siblings" in format_balance(report)


def test_image_features_of_a_thumbnail(tmp_path) -> None:
    Image.new("RGB", (16, 16), (250, 10, 10)).save(tmp_path / "red.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    red = image_features(tmp_path / "red.png")
    assert red is not None and red.shape == (IMAGE_DIM,)
    assert np.isclose(np.linalg.norm(red), 1.0)
    assert image_features(tmp_path / "broken.png") is None


def test_text_model_loads_offline_and_embeds_meaningfully(tmp_path) -> None:
    vectors = embed_texts(["a romantic comedy in Paris", "a love story set in France", "zombie horror night"])
    assert vectors.shape == (3, TEXT_DIM) == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]

    Image.new("RGB", (8, 8), (0, 0, 255)).save(tmp_path / "blue.png")
    items = pd.DataFrame(
        {
            "item_id": [3, 4],
            "title": ["Blue", "None"],
            "text": [None, "x"],
            "thumbnail_path": ["blue.png", None],
        }
    )
    embedded = embed_items(items, [tmp_path])
    assert list(embedded["has_image"]) == [True, False]
    assert len(embedded["text_embedding"].iloc[0]) == TEXT_DIM

"""The cluster-restricted faiss index against exact numpy search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from serendipity.retrieval.index import ClusterIndex, UnknownClusterError


@pytest.fixture(scope="module")
def corpus() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    item_ids = rng.permutation(np.arange(1000, 1600))
    cluster_ids = rng.integers(0, 6, size=len(item_ids)) * 10 + 3
    vectors = rng.normal(size=(len(item_ids), 16)).astype(np.float32)
    return item_ids, cluster_ids, vectors


def exact_top(query: np.ndarray, vectors: np.ndarray, item_ids: np.ndarray, k: int) -> list[int]:
    scores = vectors @ query
    return item_ids[np.argsort(-scores, kind="stable")[:k]].tolist()


def test_search_inside_a_cluster_is_exact_and_stays_in_the_cluster(corpus) -> None:
    item_ids, cluster_ids, vectors = corpus
    index = ClusterIndex.build(item_ids, cluster_ids, vectors)
    assert index.cluster_ids == [3, 13, 23, 33, 43, 53]
    query = np.random.default_rng(1).normal(size=16).astype(np.float32)
    for cluster in index.cluster_ids:
        inside = cluster_ids == cluster
        assert index.cluster_size(cluster) == int(inside.sum())
        found, scores = index.search(query, 7, cluster)
        assert found.tolist() == exact_top(query, vectors[inside], item_ids[inside], 7)
        assert np.all(np.diff(scores) <= 1e-6)
        assert set(found.tolist()) <= set(item_ids[inside].tolist())


def test_unrestricted_search_covers_the_whole_corpus(corpus) -> None:
    item_ids, cluster_ids, vectors = corpus
    index = ClusterIndex.build(item_ids, cluster_ids, vectors)
    query = vectors[5]
    found, _ = index.search(query, 10)
    assert found.tolist() == exact_top(query, vectors, item_ids, 10)
    assert len(index) == len(item_ids)


def test_k_larger_than_a_cluster_returns_the_whole_cluster(corpus) -> None:
    item_ids, cluster_ids, vectors = corpus
    index = ClusterIndex.build(item_ids[:5], np.array([1, 1, 2, 2, 2]), vectors[:5])
    found, _ = index.search(vectors[0], 50, 1)
    assert sorted(found.tolist()) == sorted(item_ids[:2].tolist())


def test_large_clusters_get_an_hnsw_index_with_high_recall(corpus) -> None:
    item_ids, cluster_ids, vectors = corpus
    index = ClusterIndex.build(item_ids, cluster_ids, vectors, flat_max_items=50, hnsw_m=16)
    assert index.info["flat_max_items"] == 50
    rng = np.random.default_rng(2)
    hits = 0
    for _ in range(20):
        query = rng.normal(size=16).astype(np.float32)
        inside = cluster_ids == 23
        found, _ = index.search(query, 5, 23)
        assert set(found.tolist()) <= set(item_ids[inside].tolist())
        hits += len(set(found.tolist()) & set(exact_top(query, vectors[inside], item_ids[inside], 5)))
    assert hits / 100 >= 0.9


def test_save_and_load_round_trip(corpus, tmp_path: Path) -> None:
    item_ids, cluster_ids, vectors = corpus
    index = ClusterIndex.build(item_ids, cluster_ids, vectors, flat_max_items=60)
    index.save(tmp_path)
    loaded = ClusterIndex.load(tmp_path)
    assert loaded.cluster_ids == index.cluster_ids and loaded.dim == 16
    for cluster in [None, *index.cluster_ids]:
        a_ids, a_scores = index.search(vectors[3], 8, cluster)
        b_ids, b_scores = loaded.search(vectors[3], 8, cluster)
        assert a_ids.tolist() == b_ids.tolist()
        np.testing.assert_allclose(a_scores, b_scores)


def test_bad_input_is_rejected(corpus) -> None:
    item_ids, cluster_ids, vectors = corpus
    index = ClusterIndex.build(item_ids, cluster_ids, vectors)
    with pytest.raises(UnknownClusterError, match="cluster 4 has no items"):
        index.search(vectors[0], 3, 4)
    with pytest.raises(ValueError, match="differ in length"):
        ClusterIndex.build(item_ids, cluster_ids[:-1], vectors)
    with pytest.raises(ValueError, match="reserved"):
        ClusterIndex.build(item_ids[:2], np.array([-1, 3]), vectors[:2])

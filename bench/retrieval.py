"""Cluster-restricted search latency: the per-cluster faiss index vs numpy over the same cluster vs an
ID-filtered scan of the whole corpus (numpy, and faiss with an IDSelector).

Random unit vectors (``--items`` x ``--dim``) in ``--clusters`` clusters; one query at a time, as the
online service searches. Prints a table and writes bench/results/retrieval.json; never asserts on time.

    .venv/bin/python -m bench.retrieval                      # 1M items x 64 dims, 1,000 clusters
    .venv/bin/python -m bench.retrieval --items 100000 --queries 500
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from serendipity.io import write_json_atomic
from serendipity.retrieval.index import ClusterIndex

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "retrieval.json"


def top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    best = np.argpartition(-scores, k - 1)[:k] if len(scores) > k else np.arange(len(scores))
    return ids[best[np.argsort(-scores[best])]]


def latency_us(
    search: Callable[[np.ndarray, int], object], queries: np.ndarray, clusters: np.ndarray
) -> dict:
    for query, cluster in zip(queries[:20], clusters[:20], strict=True):  # warm-up
        search(query, int(cluster))
    times = []
    for query, cluster in zip(queries, clusters, strict=True):
        start = time.perf_counter_ns()
        search(query, int(cluster))
        times.append((time.perf_counter_ns() - start) / 1000)
    values = np.array(times)
    return {
        "p50_us": float(np.percentile(values, 50)),
        "p95_us": float(np.percentile(values, 95)),
        "mean_us": float(values.mean()),
    }


def run(
    items: int,
    dim: int,
    clusters: int,
    queries: int,
    k: int,
    threads: int,
    seed: int,
    flat_max_items: int,
    use_gpu: bool | None = None,
) -> dict:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((items, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    item_ids = np.arange(items, dtype=np.int64)
    cluster_ids = rng.integers(0, clusters, size=items)
    start = time.perf_counter()
    index = ClusterIndex.build(item_ids, cluster_ids, vectors, flat_max_items=flat_max_items)
    build_s = time.perf_counter() - start
    by_cluster = {c: np.flatnonzero(cluster_ids == c) for c in range(clusters)}
    cluster_vectors = {c: np.ascontiguousarray(vectors[rows]) for c, rows in by_cluster.items()}
    query_vectors = rng.standard_normal((queries, dim), dtype=np.float32)
    query_clusters = rng.integers(0, clusters, size=queries)
    full = faiss.IndexFlatIP(dim)
    full.add(vectors)

    def restricted(query: np.ndarray, cluster: int) -> object:
        return index.search(query, k, cluster)

    def numpy_cluster(query: np.ndarray, cluster: int) -> object:
        return top_k(cluster_vectors[cluster] @ query, by_cluster[cluster], k)

    def numpy_filtered_scan(query: np.ndarray, cluster: int) -> object:
        scores = vectors @ query
        allowed = cluster_ids == cluster
        return top_k(np.where(allowed, scores, -np.inf), item_ids, k)

    def faiss_filtered_scan(query: np.ndarray, cluster: int) -> object:
        selector = faiss.IDSelectorBatch(by_cluster[cluster])
        return full.search(query[None], k, params=faiss.SearchParameters(sel=selector))

    def unrestricted(query: np.ndarray, cluster: int) -> object:
        return index.search(query, k, None)

    # Same answers: the restricted index is exact (flat) here, like numpy over the cluster.
    for query, cluster in zip(query_vectors[:10], query_clusters[:10], strict=True):
        found, _ = index.search(query, k, int(cluster))
        assert found.tolist() == numpy_cluster(query, int(cluster)).tolist()
    # On the GPU (when faiss sees one, unless --gpu off) the same answers again.
    samples = list(zip(query_vectors[:10], query_clusters[:10].tolist(), strict=True))
    on_cpu = [index.search(query, k, cluster)[0].tolist() for query, cluster in samples]
    index.to_gpu(use_gpu)
    assert [index.search(query, k, cluster)[0].tolist() for query, cluster in samples] == on_cpu

    faiss.omp_set_num_threads(threads)
    methods = {
        "restricted_faiss": restricted,
        "numpy_same_cluster": numpy_cluster,
        "numpy_id_filtered_full_scan": numpy_filtered_scan,
        "faiss_id_selector_full_scan": faiss_filtered_scan,
        "unrestricted_faiss": unrestricted,
    }
    slow = {"numpy_id_filtered_full_scan", "faiss_id_selector_full_scan", "unrestricted_faiss"}
    figures = {}
    for name, method in methods.items():
        count = min(queries, 50) if name in slow else queries
        figures[name] = latency_us(method, query_vectors[:count], query_clusters[:count])
        figures[name]["queries"] = count
    restricted_p50 = figures["restricted_faiss"]["p50_us"]
    return {
        "items": items,
        "dim": dim,
        "clusters": clusters,
        "mean_cluster_size": items / clusters,
        "k": k,
        "faiss_threads": threads,
        "index_device": index.device,
        "flat_max_items": flat_max_items,
        "index_build_s": build_s,
        "latency": figures,
        "restricted_vs_numpy_same_cluster": restricted_p50 / figures["numpy_same_cluster"]["p50_us"],
        "id_filtered_numpy_vs_restricted": figures["numpy_id_filtered_full_scan"]["p50_us"] / restricted_p50,
        "id_filtered_faiss_vs_restricted": figures["faiss_id_selector_full_scan"]["p50_us"] / restricted_p50,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="faiss OpenMP threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gpu", choices=("auto", "off"), default="auto", help="auto: when faiss sees a GPU")
    parser.add_argument(
        "--flat-max-items",
        type=int,
        default=50_000,
        help="partitions above this get HNSW (the unrestricted one over all items is the slow build)",
    )
    args = parser.parse_args(argv)
    result = run(
        args.items,
        args.dim,
        args.clusters,
        args.queries,
        args.k,
        args.threads,
        args.seed,
        args.flat_max_items,
        use_gpu=None if args.gpu == "auto" else False,
    )
    result["machine"] = {
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "platform": platform.platform(),
        "faiss": faiss.__version__,
        "numpy": np.__version__,
    }
    print(
        f"{args.items:,} items x {args.dim} dims in {args.clusters:,} clusters, k={args.k}, "
        f"index on {result['index_device']}"
    )
    print(f"{'method':32s} {'p50 us':>10s} {'p95 us':>10s} {'queries':>8s}")
    for name, figures in result["latency"].items():
        print(f"{name:32s} {figures['p50_us']:10.1f} {figures['p95_us']:10.1f} {figures['queries']:8d}")
    print(
        f"restricted / numpy same cluster: {result['restricted_vs_numpy_same_cluster']:.2f}x (target <= 2x)"
    )
    print(
        f"ID-filtered full scan / restricted: numpy {result['id_filtered_numpy_vs_restricted']:.0f}x, "
        f"faiss IDSelector {result['id_filtered_faiss_vs_restricted']:.0f}x"
    )
    print(f"load average {result['machine']['load_average_1m']:.1f} on {result['machine']['cpus']} CPUs")
    write_json_atomic(result, RESULTS_PATH)
    return result


if __name__ == "__main__":
    main()

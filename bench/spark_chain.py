"""Throughput of the Spark mining chain (aggregates, pairs, curate, corpus) on generated worlds.

Prints and saves ``bench/results/spark_chain.json``: seconds and rows/s per job, peak RSS of the
driver (Python alone, and Python plus its Spark JVM) and the time ratio between the two sizes.
Never asserts. Usage: ``.venv/bin/python bench/spark_chain.py --sizes 1000000 10000000``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq

from serendipity.config import PipelineConfig, WorldConfig, config_from_dict
from serendipity.layout import WorkLayout
from serendipity.schema import DATASET_FILES
from serendipity.world import generate_world
from spark_jobs import MINING_JOBS

MAIN_INPUT = {
    "aggregates": "interactions",
    "pairs": "interactions",
    "curate": "context_cluster_scores",
    "corpus": "interactions",
}
RESULTS = Path(__file__).resolve().parent / "results" / "spark_chain.json"


class PeakMemory:
    """Samples the RSS of this process and of its children (the Spark JVM) in a background thread."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.peak_tree_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for process in [me, *me.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    continue
            self.peak_tree_bytes = max(self.peak_tree_bytes, total)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def world_config(interactions: int) -> WorldConfig:
    scale = max(interactions // 1_000_000, 1)
    return WorldConfig(
        items=20_000 * scale, users=20_000 * scale, interactions=interactions, media="none", days=30, seed=0
    )


def bench_config(root: Path, dataset_dir: Path, master: str) -> PipelineConfig:
    data = {
        "name": "bench",
        "dataset_dir": str(dataset_dir),
        "work_dir": str(root / "work"),
        "spark": {
            "master": master,
            "shuffle_partitions": 8,
            "driver_memory": "4g",
            "extra_conf": {"spark.ui.showConsoleProgress": "false"},
        },
    }
    return config_from_dict(data, root)


def warm_up_spark(config: PipelineConfig) -> float:
    """Start the session (JVM launch, first job) before any job is timed; returns the seconds spent."""
    from spark_jobs.common import get_spark

    clock = time.perf_counter()
    get_spark(config.spark).range(1000).selectExpr("sum(id)").collect()
    return round(time.perf_counter() - clock, 2)


def run_size(interactions: int, root: Path, master: str) -> dict[str, Any]:
    import importlib

    root.mkdir(parents=True, exist_ok=True)
    dataset = root / "dataset"
    clock = time.perf_counter()
    # In a child process, so the peak RSS measured here is the Spark driver's, not the generator's.
    generator = multiprocessing.get_context("spawn").Process(
        target=generate_world, args=(dataset, world_config(interactions))
    )
    generator.start()
    generator.join()
    if generator.exitcode != 0:
        raise RuntimeError(
            f"generate_world failed for {interactions} interactions (exit {generator.exitcode})"
        )
    generate_s = time.perf_counter() - clock
    config = bench_config(root, dataset, master)
    layout = WorkLayout.of(config)
    layout.validated_dir.mkdir(parents=True, exist_ok=True)
    for name in DATASET_FILES:
        shutil.copy(dataset / name, layout.validated_dir / name)
    jobs: dict[str, Any] = {}
    for name in MINING_JOBS:
        module = importlib.import_module(f"spark_jobs.{name}")
        clock = time.perf_counter()
        module.run(config)
        seconds = time.perf_counter() - clock
        stats = json.loads(layout.job_stats_path(name).read_text())
        rows_in = int(stats["inputs"][MAIN_INPUT[name]])
        jobs[name] = {
            "seconds": round(seconds, 3),
            "rows_in": rows_in,
            "rows_per_s": round(rows_in / seconds, 1),
            "outputs": stats["outputs"],
        }
    return {
        **{
            name.removesuffix(".parquet"): pq.read_metadata(dataset / name).num_rows for name in DATASET_FILES
        },
        "generate_world_s": round(generate_s, 2),
        "jobs": jobs,
        "chain_seconds": round(sum(job["seconds"] for job in jobs.values()), 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the generated worlds and outputs")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-spark-"))
    results: dict[str, Any] = {"cpu_count": os.cpu_count(), "master": args.master, "sizes": {}}
    try:
        results["spark_start_s"] = warm_up_spark(bench_config(root, root / "none", args.master))
        for size in args.sizes:
            with PeakMemory() as memory:
                measured = run_size(size, root / str(size), args.master)
            measured["peak_rss_driver_with_jvm_mb"] = round(memory.peak_tree_bytes / 2**20, 1)
            measured["peak_rss_driver_python_mb_so_far"] = round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
            )
            results["sizes"][str(size)] = measured
            print(json.dumps(measured, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    sizes = sorted(results["sizes"], key=int)
    if len(sizes) >= 2:
        small, large = results["sizes"][sizes[0]], results["sizes"][sizes[-1]]
        results["time_ratio_largest_to_smallest"] = {
            name: round(large["jobs"][name]["seconds"] / small["jobs"][name]["seconds"], 2)
            for name in MINING_JOBS
        } | {"chain": round(large["chain_seconds"] / small["chain_seconds"], 2)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k != "sizes"}, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()

"""Throughput of every Spark job the pipeline runs (validate, build_tree, the mining chain, user_history).

On generated worlds (build_tree on the world marked as having a placeholder tree, as the pipeline runs
it then). Prints and saves ``bench/results/spark_chain.json``: seconds, rows/s and the peak RSS of the
driver's Python process and of its Spark JVM (with the JVM's Python workers) per job, the peak of both
together per size, the time ratio between the sizes, and the load average (figures taken with a 1-min
load >= 1.5 are marked ``under_load``). Never asserts.
Usage: ``.venv/bin/python -m bench.spark_chain --sizes 1000000 10000000``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq

from serendipity.app.stages import Engine, stages_on
from serendipity.config import PipelineConfig, WorldConfig, config_from_dict
from serendipity.io import write_json_atomic
from serendipity.layout import WorkLayout
from serendipity.schema import DATASET_FILES, TREE_INFO_FILE
from serendipity.stage_stats import read_stage_stats
from serendipity.world import generate_world
from spark_jobs import MINING_JOBS

SPARK_STAGES = {stage.name: stage for stage in stages_on(Engine.SPARK)}  # the stage table's Spark jobs

RESULTS = Path(__file__).resolve().parent / "results" / "spark_chain.json"
QUIET_LOAD = 1.5  # 1-min load average under which the machine counts as quiet


class PeakMemory:
    """Samples the RSS of this process (the driver's Python) and of its children (the Spark JVM and its
    Python workers) in a background thread; peaks of each and of both together."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.peak_tree_bytes = 0
        self.peak_python_bytes = 0
        self.peak_jvm_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            python, children = me.memory_info().rss, 0
            for process in me.children(recursive=True):
                try:
                    children += process.memory_info().rss
                except psutil.Error:
                    continue
            self.peak_python_bytes = max(self.peak_python_bytes, python)
            self.peak_jvm_bytes = max(self.peak_jvm_bytes, children)
            self.peak_tree_bytes = max(self.peak_tree_bytes, python + children)
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


def generate(dataset: Path, interactions: int) -> float:
    """The world, generated in a child process (so the peaks measured here are the Spark driver's),
    marked as carrying a placeholder tree so build_tree builds one; returns the seconds spent."""
    clock = time.perf_counter()
    generator = multiprocessing.get_context("spawn").Process(
        target=generate_world, args=(dataset, world_config(interactions))
    )
    generator.start()
    generator.join()
    if generator.exitcode != 0:
        raise RuntimeError(
            f"generate_world failed for {interactions} interactions (exit {generator.exitcode})"
        )
    write_json_atomic({"placeholder": True, "source": "bench"}, dataset / TREE_INFO_FILE)
    return time.perf_counter() - clock


def run_job(name: str, config: PipelineConfig) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    with PeakMemory() as memory:
        clock = time.perf_counter()
        SPARK_STAGES[name].run(config)
        seconds = time.perf_counter() - clock
    stats = read_stage_stats(WorkLayout.of(config), name)
    count = stats.rows_in
    return {
        "seconds": round(seconds, 3),
        "rows_in": count,
        "rows_per_s": round(count / seconds, 1),
        "peak_rss_driver_python_mb": round(memory.peak_python_bytes / 2**20, 1),
        "peak_rss_jvm_mb": round(memory.peak_jvm_bytes / 2**20, 1),
        "outputs": stats.output_figures(),
        "load_average_1min_at_start": round(load_before, 2),
        "under_load": load_before >= QUIET_LOAD,
    }


def run_size(interactions: int, root: Path, master: str, jobs_to_run: list[str]) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    dataset = root / "dataset"
    generate_s = generate(dataset, interactions)
    config = bench_config(root, dataset, master)
    if "validate" not in jobs_to_run:  # the mining jobs read the validated dir: the world is valid
        layout = WorkLayout.of(config)
        layout.validated_dir.mkdir(parents=True, exist_ok=True)
        for name in DATASET_FILES:
            shutil.copy(dataset / name, layout.validated_dir / name)
    load_before = os.getloadavg()[0]
    jobs = {}
    for name in jobs_to_run:
        jobs[name] = run_job(name, config)
        print(name, json.dumps(jobs[name]))
    load = max(load_before, os.getloadavg()[0])
    return {
        **{
            name.removesuffix(".parquet"): pq.read_metadata(dataset / name).num_rows for name in DATASET_FILES
        },
        "generate_world_s": round(generate_s, 2),
        "jobs": jobs,
        "chain_seconds": round(sum(jobs[name]["seconds"] for name in MINING_JOBS if name in jobs), 3),
        "all_jobs_seconds": round(sum(job["seconds"] for job in jobs.values()), 3),
        "peak_rss_driver_python_mb": max(job["peak_rss_driver_python_mb"] for job in jobs.values()),
        "load_average_1min_max": round(load, 2),
        "under_load": load >= QUIET_LOAD,
    }


def merged(previous: dict[str, Any], fresh: dict[str, Any]) -> dict[str, Any]:
    """``previous`` with the jobs ``fresh`` measured replaced (each job row names its command and load)."""
    for size, measured in fresh["sizes"].items():
        row = previous["sizes"].setdefault(size, {**measured, "jobs": {}})
        for name, job in measured["jobs"].items():
            row["jobs"][name] = {**job, "command": fresh["command"]}
        row["all_jobs_seconds"] = round(sum(job["seconds"] for job in row["jobs"].values()), 3)
    return previous


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the generated worlds and outputs")
    parser.add_argument("--jobs", nargs="+", default=list(SPARK_STAGES), choices=list(SPARK_STAGES))
    parser.add_argument(
        "--merge", action="store_true", help="replace only these jobs' figures in --out, keep its other rows"
    )
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-spark-"))
    results: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "master": args.master,
        "command": "python -m bench.spark_chain " + " ".join(argv if argv is not None else sys.argv[1:]),
        "sizes": {},
    }
    try:
        results["spark_start_s"] = warm_up_spark(bench_config(root, root / "none", args.master))
        for size in args.sizes:
            with PeakMemory() as memory:
                measured = run_size(size, root / str(size), args.master, args.jobs)
            measured["peak_rss_driver_with_jvm_mb"] = round(memory.peak_tree_bytes / 2**20, 1)
            measured["peak_rss_driver_python_mb_so_far"] = round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
            )
            results["sizes"][str(size)] = measured
            print(json.dumps(measured, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if args.merge and args.out.exists():
        results = merged(json.loads(args.out.read_text()), results)
    sizes = sorted(results["sizes"], key=int)
    if len(sizes) >= 2:
        small, large = results["sizes"][sizes[0]], results["sizes"][sizes[-1]]
        results["time_ratio_largest_to_smallest"] = {
            name: round(large["jobs"][name]["seconds"] / small["jobs"][name]["seconds"], 2)
            for name in large["jobs"]
            if name in small["jobs"]
        } | {"chain": round(large["chain_seconds"] / max(small["chain_seconds"], 1e-9), 2)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k != "sizes"}, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()

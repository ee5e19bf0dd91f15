"""The main job's wall time and peak memory: `make demo` from an empty work dir (targets 15 min, 8 GiB).

    .venv/bin/python -m bench.demo [--config CONFIG] [--keep-dataset] [--out bench/results/demo.json]

Peak memory is the largest sum of RSS over the whole process tree (Spark's JVM, Ray workers, the Serve
replicas included), sampled every half second. The endpoint is stopped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from devtools import REPO, VENV_BIN


def process_label(process: psutil.Process) -> str:
    """What a process is: a Ray role (raylet, gcs_server, dashboard, ``ray::Actor`` workers), the Spark JVM,
    a PySpark worker, or the command's own Python."""
    try:
        name, cmdline = process.name(), process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "gone"
    head = cmdline[0] if cmdline else name
    if head.startswith("ray::"):
        return head.split("(")[0].split(".")[0]  # ray::IDLE, ray::RayTrainWorker, ray::MapWorker, ...
    joined = " ".join(cmdline)
    for role in (
        "raylet",
        "gcs_server",
        "dashboard_agent",
        "runtime_env",
        "dashboard",
        "log_monitor",
        "monitor",
    ):
        if role in name or f"/{role}" in joined or f"{role}.py" in joined:
            return role
    if name == "java":
        return "spark_jvm"
    if "pyspark" in joined:
        return "pyspark_worker"
    return Path(head).name


def tree_rss(root: psutil.Process) -> tuple[int, dict[str, dict[str, float]]]:
    """Summed RSS of ``root`` and its descendants, and the same per process label (GiB, count)."""
    total, by_label = 0, {}
    for process in [root, *root.children(recursive=True)]:
        try:
            rss = process.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += rss
        label = "root" if process.pid == root.pid else process_label(process)
        entry = by_label.setdefault(label, {"rss_gib": 0.0, "processes": 0})
        entry["rss_gib"] += rss / 2**30
        entry["processes"] += 1
    for entry in by_label.values():
        entry["rss_gib"] = round(entry["rss_gib"], 3)
    return total, dict(sorted(by_label.items(), key=lambda item: -item[1]["rss_gib"]))


@dataclass
class Measured:
    seconds: float
    peak_bytes: int
    code: int
    peak_at: float  # epoch seconds of the peak sample
    peak_breakdown: dict[str, dict[str, float]]


def run_measured(command: list[str], log_path: Path) -> Measured:
    """Wall time, peak tree RSS (with its per-process breakdown and time) and return code of ``command``."""
    peak, peak_at, breakdown, done = 0, 0.0, {}, threading.Event()
    started = time.perf_counter()
    with log_path.open("a") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        root = psutil.Process(process.pid)

        def sample() -> None:
            nonlocal peak, peak_at, breakdown
            while not done.is_set():
                total, labels = tree_rss(root)
                if total > peak:
                    peak, peak_at, breakdown = total, time.time(), labels
                done.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = process.wait()
        done.set()
        sampler.join()
    return Measured(time.perf_counter() - started, peak, code, peak_at, breakdown)


def stage_at(config_path: Path, moment: float) -> str | None:
    """The pipeline stage running at ``moment`` (epoch seconds), from the stage markers."""
    from serendipity.config import load_config

    for marker in load_config(config_path).path("_stages").glob("*.json"):
        data = json.loads(marker.read_text())
        if "finished" in data and data["finished"] - data.get("seconds", 0.0) <= moment <= data["finished"]:
            return marker.stem
    return None


def stage_seconds(config_path: Path) -> dict[str, float]:
    from serendipity.config import load_config

    stages = load_config(config_path).path("_stages")
    times = {}
    for marker in sorted(stages.glob("*.json")):
        data = json.loads(marker.read_text())
        if "seconds" in data:
            times[marker.stem] = data["seconds"]
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml")
    parser.add_argument("--keep-dataset", action="store_true", help="reuse the generated world")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "demo.json")
    args = parser.parse_args()

    from serendipity.config import load_config

    config = load_config(args.config)
    shutil.rmtree(config.work_dir, ignore_errors=True)
    if not args.keep_dataset:
        shutil.rmtree(config.dataset_dir, ignore_errors=True)
    cli = str(VENV_BIN / "serendipity")
    log_path = args.out.with_suffix(".log")
    log_path.unlink(missing_ok=True)
    steps = {
        "pipeline": [cli, "pipeline", "run", "--config", str(args.config)],
        "serve_start": [cli, "serve", "start", "--config", str(args.config)],
        "serve_query": [cli, "serve", "query", "--config", str(args.config)],
    }
    figures: dict[str, object] = {}
    peak_total, load_at_start = 0, os.getloadavg()
    try:
        for name, command in steps.items():
            measured = run_measured(command, log_path)
            figures[name] = {
                "seconds": round(measured.seconds, 1),
                "peak_tree_rss_gib": round(measured.peak_bytes / 2**30, 2),
                "peak_stage": stage_at(args.config, measured.peak_at) if name == "pipeline" else None,
                "peak_breakdown": measured.peak_breakdown,
            }
            peak_total = max(peak_total, measured.peak_bytes)
            if measured.code != 0:
                figures["failed"] = f"{name} exited with {measured.code}; see {log_path}"
                break
    finally:
        subprocess.run([cli, "serve", "stop", "--config", str(args.config)], cwd=REPO, check=False)
    total = sum(step["seconds"] for step in figures.values() if isinstance(step, dict))
    figures.update(
        total_seconds=round(total, 1),
        total_minutes=round(total / 60, 2),
        peak_rss_gib=round(peak_total / 2**30, 2),
        targets={"minutes": 15, "peak_gib": 8},
        world_reused=args.keep_dataset,
        under_load=load_at_start[0] > 1.0,
        command=" ".join(["python -m bench.demo", *sys.argv[1:]]),
        stages=stage_seconds(args.config),
        machine={
            "cpus": os.cpu_count(),
            "load_avg_at_start": [round(value, 2) for value in load_at_start],
            "load_avg_at_end": [round(value, 2) for value in os.getloadavg()],
            "python": platform.python_version(),
        },
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(json.dumps(figures, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()

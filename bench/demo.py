"""The main job's wall time and peak memory: `make demo` from an empty work dir (targets 15 min, 8 GiB).

    .venv/bin/python bench/demo.py [--config CONFIG] [--keep-dataset] [--out bench/results/demo.json]

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
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def tree_rss_bytes(root: psutil.Process) -> int:
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def run_measured(command: list[str], log_path: Path) -> tuple[float, int, int]:
    """(seconds, peak tree RSS in bytes, return code) of ``command``."""
    peak, done = 0, threading.Event()
    started = time.perf_counter()
    with log_path.open("a") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        root = psutil.Process(process.pid)

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, tree_rss_bytes(root))
                done.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = process.wait()
        done.set()
        sampler.join()
    return time.perf_counter() - started, peak, code


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
    cli = str(REPO / ".venv" / "bin" / "serendipity")
    log_path = args.out.with_suffix(".log")
    log_path.unlink(missing_ok=True)
    steps = {
        "pipeline": [cli, "pipeline", "run", "--config", str(args.config)],
        "serve_start": [cli, "serve", "start", "--config", str(args.config)],
        "serve_query": [cli, "serve", "query", "--config", str(args.config)],
    }
    figures: dict[str, object] = {}
    peak_total = 0
    try:
        for name, command in steps.items():
            seconds, peak, code = run_measured(command, log_path)
            figures[name] = {"seconds": round(seconds, 1), "peak_tree_rss_gib": round(peak / 2**30, 2)}
            peak_total = max(peak_total, peak)
            if code != 0:
                figures["failed"] = f"{name} exited with {code}; see {log_path}"
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
        stages=stage_seconds(args.config),
        machine={
            "cpus": os.cpu_count(),
            "load_avg_1m_at_end": os.getloadavg()[0],
            "python": platform.python_version(),
        },
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(json.dumps(figures, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()

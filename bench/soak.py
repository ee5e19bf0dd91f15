"""Soak: the served endpoint (admission front + Serve, as `serendipity serve start` runs it) at half its
capacity for 10 minutes: no error, and memory that stays flat.

    python -m bench.soak --config configs/demo.yaml [--rate 50] [--duration 600] [--window 30]

The pipeline config's chain must have run (retriever trained, Feast store materialised). The endpoint is
started detached (or the one already running is used) and stopped at the end if this script started it.
Load: open loop at ``--rate`` (default half the capacity recorded in bench/results/serve_load.json),
in back-to-back windows of ``--window`` seconds, each from a separate process (bench/serve_load.py's
generator, so it never shares the event loop it measures). After each window: that window's answers
(ok, shed, other errors, p50, p99) and the resident memory of the endpoint's whole process tree (the
driver, Ray's processes, the replicas, HAProxy). ``memory_growth`` compares the last third of the
samples with the first third after the first window (warm-up). Writes bench/results/soak.json with
the command and the load average before and after (``SoakResult`` of bench/load_figures.py); never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.load_figures import ServeLoadResult, SoakResult, SoakWindow
from devtools import REPO

RESULTS_PATH = REPO / "bench" / "results" / "soak.json"
CAPACITY_PATH = REPO / "bench" / "results" / "serve_load.json"


def half_capacity() -> float:
    """Half the capacity bench/serve_load.py measured (50 req/s when it has no figure)."""
    try:
        capacity = ServeLoadResult.read(CAPACITY_PATH).capacity_rps
    except (OSError, ValueError):  # no file, not JSON, figures of the wrong type
        return 50.0
    return 50.0 if capacity is None else capacity / 2


def tree_rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` and all its descendants, MiB."""
    import psutil

    root = psutil.Process(pid)
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            continue  # ended between listing and reading
    return round(total / 2**20, 1)


def memory_growth(samples: list[float]) -> float | None:
    """Relative growth of the median of the last third of ``samples`` over the first third."""
    if len(samples) < 3:
        return None
    third = max(1, len(samples) // 3)
    first, last = sorted(samples[:third]), sorted(samples[-third:])
    before, after = first[len(first) // 2], last[len(last) // 2]
    return round((after - before) / before, 4)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--rate", type=float, default=None, help="requests/s; default half the capacity")
    parser.add_argument("--duration", type=float, default=600.0)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)
    from bench.serve_load import request_bodies, run_load
    from serendipity.config import load_config
    from serving.local import read_endpoint, start_detached, stop

    config_path = args.config.resolve()
    config = load_config(config_path)
    rate = args.rate or half_capacity()
    load_before = os.getloadavg()
    started_here = read_endpoint(config) is None
    endpoint = start_detached(config_path)
    windows: list[SoakWindow] = []
    try:
        with tempfile.TemporaryDirectory() as scratch:
            bodies_path = Path(scratch) / "bodies.json"
            bodies_path.write_text(json.dumps(request_bodies(config_path, k=10)))
            url = f"{endpoint.url}/recommend"
            begun = time.monotonic()
            while time.monotonic() - begun < args.duration:
                run = run_load(url, bodies_path, rate, args.window)
                window = SoakWindow(
                    **run.to_json(),
                    at_s=round(time.monotonic() - begun, 1),
                    rss_mib=tree_rss_mib(endpoint.pid),
                    load_avg_1m=os.getloadavg()[0],
                )
                windows.append(window)
                print(
                    f"{window.at_s:7.1f} s  ok {window.ok:6d}  shed {window.shed:3d}  "
                    f"other {window.other_errors:3d}  p50 {window.p50_ms} ms  "
                    f"p99 {window.p99_ms} ms  "
                    f"rss {window.rss_mib} MiB  load {window.load_avg_1m:.2f}",
                    flush=True,
                )
    finally:
        if started_here:
            stop(config)
    memory = [window.rss_mib for window in windows[1:] if window.rss_mib is not None]  # 1st: warm-up
    summary = SoakResult(
        command="python -m bench.soak " + " ".join(argv if argv is not None else sys.argv[1:]),
        config=config.name,
        rate_rps=rate,
        duration_s=args.duration,
        window_s=args.window,
        cpus=os.cpu_count(),
        load_average_before=[round(value, 2) for value in load_before],
        load_average_after=[round(value, 2) for value in os.getloadavg()],
        sent=sum(window.sent for window in windows),
        ok=sum(window.ok for window in windows),
        shed=sum(window.shed for window in windows),
        other_errors=sum(window.other_errors for window in windows),
        worst_window_p99_ms=max((window.p99_ms or 0.0) for window in windows) if windows else None,
        rss_mib_first=memory[0] if memory else None,
        rss_mib_last=memory[-1] if memory else None,
        memory_growth=memory_growth(memory),
        windows=windows,
    )
    summary.write(args.out)
    print(json.dumps({key: value for key, value in summary.to_json().items() if key != "windows"}, indent=2))


if __name__ == "__main__":
    main()

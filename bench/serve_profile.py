"""Where one /recommend request's time goes: CPU per process and py-spy samples under a steady load.

    python -m bench.serve_profile --config configs/demo.yaml --rates 100 300 [--duration 12]
        [--topology split|colocated] [--label L_] [--set KEY=VALUE ...] [--serve-haproxy] [--floor]

Deploys the app like bench.serve_load (in ``--topology``, default the config's ``serving.topology``),
then at each rate runs the open-loop load generator and, from 2 s in, samples the Serve proxy, the
ingress replica and the recommender replica (or the colocated replica holding both) with
``py-spy record --format raw --nonblocking`` while it measures every process's CPU seconds.
``--floor`` profiles the bare-ASGI floor's uvicorn workers (``bench.asgi_floor``) the same way.
Writes bench/results/serve_profile/<rate>.json: CPU seconds per process (and per answered request),
and per profiled process the share of its samples in the top frames (inclusive and self) and in
coarse categories (HTTP parsing, routing, FastAPI/pydantic, Feast read, faiss, torch, JSON, logging).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psutil

from bench.load_figures import LoadRun
from bench.serve_load import (
    SERVE_HAPROXY_SET,
    add_set_option,
    asgi_floor,
    config_with_sets,
    deploy,
    load_command,
    request_bodies,
    run_load,
    sets_of,
)
from devtools import REPO
from devtools.services import free_port

OUT_DIR = Path(__file__).resolve().parent / "results" / "serve_profile"
PY_SPY = Path(sys.executable).parent / "py-spy"
ROLES = {
    "proxy": "ray::ProxyActor",
    "ingress": "ray::ServeReplica:serendipity:RecommendIngress",
    "recommender": "ray::ServeReplica:serendipity:RecommenderDeployment",
    "colocated": "ray::ServeReplica:serendipity:ColocatedRecommender",
}
# (category, substrings of a frame label): a stack counts in the first category one of its frames matches
CATEGORIES = [
    ("feast online read", ("feast/", "sqlite3", "redis/")),
    ("faiss search", ("faiss/", "retrieval/index.py")),
    ("torch forward", ("torch/", "retrieval/model.py")),
    ("recommender python (features, answers)", ("serendipity/", "serving/deployments.py")),
    ("fastapi / pydantic / starlette", ("fastapi/", "pydantic", "starlette/")),
    ("json", ("json/",)),
    ("logging", ("logging/", "logging_utils", "access_log")),
    ("uvicorn / h11 HTTP parsing", ("uvicorn/", "h11/", "httptools")),
    ("serve request routing (router, handle)", ("request_router", "router.py", "handle.py")),
    ("serve replica wrapper", ("serve/_private/replica.py", "serve/_private/http_util.py")),
    ("serve proxy", ("serve/_private/proxy",)),
    ("ray core (serialization, actor calls)", ("ray/_private", "ray/_raylet", "ray/actor.py")),
    ("asyncio event loop", ("asyncio/",)),
]


def find_processes() -> dict[str, psutil.Process]:
    """The Serve processes by role; a role with several replicas: ``role``, ``role_2``, ..."""
    found: dict[str, psutil.Process] = {}
    for process in psutil.process_iter(["cmdline"]):
        title = " ".join(process.info["cmdline"] or [])
        for role, prefix in ROLES.items():
            if title.startswith(prefix):
                count = sum(1 for name in found if name == role or name.startswith(f"{role}_"))
                found[role if count == 0 else f"{role}_{count + 1}"] = process
    return found


def floor_workers() -> dict[str, psutil.Process]:
    """The uvicorn workers of ``bench.asgi_floor`` (the children of its supervisor), as ``floor``, ..."""
    (supervisor,) = [
        process
        for process in psutil.process_iter(["cmdline"])
        if "bench.asgi_floor" in (process.info["cmdline"] or [])
    ]
    children = supervisor.children()
    workers = [child for child in children if "resource_tracker" not in " ".join(child.cmdline())]
    return {"floor" if i == 0 else f"floor_{i + 1}": worker for i, worker in enumerate(workers)}


def cpu_snapshot() -> dict[int, tuple[str, float]]:
    snapshot = {}
    for process in psutil.process_iter(["cmdline", "name", "cpu_times"]):
        times = process.info["cpu_times"]
        if times is None:
            continue
        title = " ".join(process.info["cmdline"] or []) or process.info["name"] or "?"
        snapshot[process.pid] = (title[:70], times.user + times.system)
    return snapshot


def cpu_deltas(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    used: Counter[str] = Counter()
    for pid, (title, seconds) in after.items():
        used[title] += seconds - before.get(pid, (title, 0.0))[1]
    return {title: round(seconds, 2) for title, seconds in used.most_common(12) if seconds >= 0.05}


def parse_raw(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks.append((frames.split(";"), int(count)))
    return stacks


def summarize(stacks: list[tuple[list[str], int]]) -> dict[str, Any]:
    total = sum(count for _, count in stacks) or 1
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    for frames, count in stacks:
        for label in {frame.split(" (")[0] + " " + _file_of(frame) for frame in frames[1:]}:
            inclusive[label] += count
        own[frames[-1].split(" (")[0] + " " + _file_of(frames[-1])] += count
        joined = ";".join(frames)
        category = next((name for name, marks in CATEGORIES if any(m in joined for m in marks)), "other")
        categories[category] += count

    def shares(counter: Counter[str], top: int) -> dict[str, float]:
        return {label: round(count / total, 3) for label, count in counter.most_common(top)}

    return {
        "samples": total,
        "categories": shares(categories, len(CATEGORIES) + 1),
        "self_top": shares(own, 15),
        "inclusive_top": shares(inclusive, 30),
    }


def _file_of(frame: str) -> str:
    inside = frame.rpartition(" (")[2].rstrip(")")
    return "(" + inside.rsplit(":", 1)[0] + ")"


def profile_rate(
    url: str,
    bodies: Path,
    rate: float,
    duration: float,
    scratch: Path,
    floor: bool = False,
    native: bool = False,
) -> dict[str, Any]:
    processes = floor_workers() if floor else find_processes()
    command = load_command(url, bodies, rate, duration)
    load = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    time.sleep(2.0)
    window = max(1, int(duration - 4))
    before = cpu_snapshot()
    spies = {
        role: subprocess.Popen(
            [str(PY_SPY), "record", "--format", "raw", "--native" if native else "--nonblocking"]
            + ["--rate", "50", "-d", str(window)]
            + ["--pid", str(process.pid), "-o", str(scratch / f"{role}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for role, process in processes.items()
    }
    for spy in spies.values():
        spy.wait()
    after = cpu_snapshot()
    result = LoadRun.from_line(load.communicate()[0].strip().splitlines()[-1])
    answered_in_window = max(1.0, result.throughput_rps * window)
    cpu = cpu_deltas(before, after)
    own = {role: after[p.pid][1] - before[p.pid][1] for role, p in processes.items()}
    return {
        "rate": rate,
        "window_s": window,
        "load": result,
        "cpu_s_in_window": cpu,
        "cpu_s_of_profiled": {role: round(seconds, 2) for role, seconds in own.items()},
        "cpu_ms_per_answered_request": {
            role: round(1000 * seconds / answered_in_window, 2) for role, seconds in own.items()
        },
        "profiles": {role: summarize(parse_raw(scratch / f"{role}.txt")) for role in processes},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--rates", type=float, nargs="+", default=[100, 300])
    parser.add_argument("--duration", type=float, default=12.0)
    parser.add_argument("--label", default="")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--no-admission", action="store_true", help="profile Serve without the front")
    parser.add_argument("--topology", choices=["split", "colocated"], help="default: the config's")
    parser.add_argument("--serve-haproxy", action="store_true", help=f"short for --set {SERVE_HAPROXY_SET}")
    parser.add_argument(
        "--floor", action="store_true", help="profile the bare-ASGI floor's workers instead of Serve"
    )
    parser.add_argument(
        "--native",
        action="store_true",
        help="py-spy --native: C frames too (it pauses the process per sample: slower answers)",
    )
    add_set_option(parser)
    args = parser.parse_args(argv)
    port = free_port()
    url = f"http://127.0.0.1:{port}/recommend"
    args.out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack, tempfile.TemporaryDirectory() as scratch:
        sets = [*sets_of(args), *([f"serving.topology={args.topology}"] if args.topology else [])]
        config_path = config_with_sets(args.config.resolve(), sets, Path(scratch))
        if args.floor:
            stack.enter_context(asgi_floor(config_path, port, request_log_dir=Path(scratch)))
        else:
            deploy(config_path, port, not args.no_admission, stack)
        bodies = Path(scratch) / "bodies.json"
        bodies.write_text(json.dumps(request_bodies(config_path, 10)))
        run_load(url, bodies, rate=10, duration=1)
        for rate in args.rates:
            loadavg = [round(value, 2) for value in os.getloadavg()]
            report = profile_rate(
                url, bodies, rate, args.duration, Path(scratch), floor=args.floor, native=args.native
            )
            report["load_average_before"] = loadavg
            report["under_load"] = loadavg[0] > 1.0
            report["command"] = " ".join(["python", "-m", "bench.serve_profile", *(argv or sys.argv[1:])])
            path = args.out / f"{args.label}rate_{rate:g}.json"
            run: LoadRun = report["load"]
            path.write_text(json.dumps({**report, "load": run.to_json()}, indent=2))
            load = run.model_dump(include={"ok", "shed", "p50_ms", "p99_ms", "shed_p99_ms"})
            print(f"wrote {path}: {load} cpu/request {report['cpu_ms_per_answered_request']}")
            for role, summary in report["profiles"].items():
                print(role, summary["samples"], json.dumps(summary["categories"]))


if __name__ == "__main__":
    main()

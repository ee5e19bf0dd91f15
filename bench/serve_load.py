"""Serve load benchmark: /recommend vs a no-op deployment behind the same ingress, at fixed request rates.

    python -m bench.serve_load --config PIPELINE.yaml [--rates 20 50 100] [--duration 10]

The pipeline config must point at a work_dir where the chain has run (retriever trained, Feast store
materialised), e.g. the one tests/integration/test_serve.py builds. Both apps run on one local Serve
on loopback; the load comes from a separate process (open loop: request i leaves at start + i/rate,
bounded to rate x duration requests; one asyncio process, its CPU seconds reported). Then:
``capacity_rps``, the highest rate meeting the target below; ``overload``, 3x that rate (503s with
Retry-After are "shed", counted apart from other errors); ``recovery``, capacity / 2 right after the
overload next to the same rate before it. Prints a table and writes bench/results/serve_load.json
with the command and the load average (``ServeLoadResult`` of bench/load_figures.py); never asserts.
Target: /recommend p99 at most 2x the no-op p99 at the same rate, with zero errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from bench.load_figures import LoadRun, Overload, RateRow, Recovery, ServeLoadResult
from devtools import REPO
from devtools.services import free_port

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "serve_load.json"
REQUEST_TIMEOUT_S = 10.0


async def _open_loop(url: str, bodies: list[dict], rate: float, duration: float) -> LoadRun:
    import aiohttp  # far cheaper per request than httpx: the generator shares the cores it measures

    count = max(1, int(rate * duration))
    latencies: list[float] = []
    shed: list[float] = []
    errors: dict[str, int] = {}
    payloads = [json.dumps(body).encode() for body in bodies]
    headers = {"content-type": "application/json"}

    async def one(session: aiohttp.ClientSession, payload: bytes) -> None:
        started = time.perf_counter()
        try:
            async with session.post(url, data=payload, headers=headers) as response:
                await response.read()
                key = None if response.status == 200 else f"http {response.status}"
                if response.status == 503 and "retry-after" in response.headers:
                    shed.append(time.perf_counter() - started)
        except (aiohttp.ClientError, TimeoutError) as error:
            key = type(error).__name__
        if key is None:
            latencies.append(time.perf_counter() - started)
        else:
            errors[key] = errors.get(key, 0) + 1

    connector = aiohttp.TCPConnector(limit=512)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        tasks = []
        for i in range(count):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, payloads[i % len(payloads)])))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return LoadRun(
        rate=rate,
        sent=count,
        ok=len(latencies),
        errors=errors,
        shed=len(shed),
        other_errors=sum(errors.values()) - len(shed),
        elapsed_s=round(elapsed, 3),
        throughput_rps=round(len(latencies) / elapsed, 2),
        p50_ms=_percentile_ms(latencies, 50),
        p99_ms=_percentile_ms(latencies, 99),
        shed_p99_ms=_percentile_ms(shed, 99),
        generator_cpu_s=round(usage.ru_utime + usage.ru_stime, 3),
    )


def _percentile_ms(seconds: list[float], q: float) -> float | None:
    return round(float(np.percentile(np.array(seconds) * 1000, q)), 2) if seconds else None


def generate_load(argv: list[str]) -> None:
    """The load process: prints one JSON result line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--bodies", type=Path, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    args = parser.parse_args(argv)
    bodies = json.loads(args.bodies.read_text())
    print(asyncio.run(_open_loop(args.url, bodies, args.rate, args.duration)).line())


def load_command(url: str, bodies_path: Path, rate: float, duration: float) -> list[str]:
    """The load process's command line (``main``'s ``load`` mode), to run with ``cwd=REPO``."""
    command = [sys.executable, "-m", "bench.serve_load", "load", "--url", url, "--bodies", str(bodies_path)]
    return command + ["--rate", str(rate), "--duration", str(duration)]


def run_load(url: str, bodies_path: Path, rate: float, duration: float) -> LoadRun:
    command = load_command(url, bodies_path, rate, duration)
    limit = 3 * duration + 6 * REQUEST_TIMEOUT_S
    try:
        finished = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, check=True, timeout=limit
        )
    except subprocess.TimeoutExpired:
        sent = int(rate * duration)
        errors = {f"load process over {limit:.0f} s": sent}
        return LoadRun(
            rate=rate,
            sent=sent,
            ok=0,
            errors=errors,
            shed=0,
            other_errors=sent,
            throughput_rps=0.0,
            p50_ms=None,
            p99_ms=None,
            shed_p99_ms=None,
            generator_cpu_s=None,
        )
    return LoadRun.from_line(finished.stdout.strip().splitlines()[-1])


def request_bodies(config_path: Path, k: int, count: int = 200, seed: int = 0) -> list[dict]:
    """Requests of users with history about items with a serendipity feature, as the test chain has them."""
    import pandas as pd

    from serendipity.config import load_config
    from serendipity.layout import WorkLayout

    layout = WorkLayout.of(load_config(config_path))
    users = pd.read_parquet(layout.user_history_path, columns=["user_id"])["user_id"].unique().tolist()
    items = pd.read_parquet(layout.serendipity_path, columns=["item_id"])["item_id"].tolist()
    rng = random.Random(seed)
    return [
        {"user_id": int(rng.choice(users)), "context_item_id": int(rng.choice(items)), "k": k}
        for _ in range(count)
    ]


def deploy(config_path: Path, port: int, admission: bool, stack: ExitStack) -> None:
    """Both apps on one local Serve (``serving.assembly.served_app``, the no-op beside the real one); with
    ``admission``, the front (the config's ``serving.admission`` limits) on ``port`` and Serve on another
    loopback port behind it."""
    import ray

    from serendipity.config import load_config
    from serving.app import build_noop_app
    from serving.assembly import served_app
    from serving.settings import AppArgs, use_throughput_env

    serving = load_config(config_path).serving
    front = serving.admission.model_copy(update={"enabled": admission, "upstream_port": free_port()})
    serving = serving.model_copy(update={"host": "127.0.0.1", "port": port, "admission": front})
    use_throughput_env()
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    args = AppArgs(config_path=str(config_path), token_env="SERENDIPITY_BENCH_NO_TOKEN")
    scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    stack.enter_context(
        served_app(
            config_path,
            serving=serving,
            args=args,
            extra_apps={"noop": ("/noop", build_noop_app(args))},
            front_config_path=scratch / "admission.cfg",
        )
    )


def measure(base: str, bodies_path: Path, rate: float, duration: float) -> RateRow:
    noop = run_load(f"{base}/noop/recommend", bodies_path, rate, duration)
    recommend = run_load(f"{base}/recommend", bodies_path, rate, duration)
    ratio = round(recommend.p99_ms / noop.p99_ms, 3) if recommend.p99_ms and noop.p99_ms else None
    met = ratio is not None and ratio <= 2.0 and not recommend.errors and not noop.errors
    return RateRow(rate=rate, recommend=recommend, noop=noop, p99_ratio=ratio, met=met)


def overload_and_recovery(
    base: str, bodies_path: Path, capacity: float, duration: float
) -> tuple[Overload, Recovery]:
    """3x ``capacity`` on /recommend, between two runs at ``capacity`` / 2 (before and right after)."""
    url = f"{base}/recommend"
    before = run_load(url, bodies_path, capacity / 2, duration)
    over = run_load(url, bodies_path, 3 * capacity, duration)
    after = run_load(url, bodies_path, capacity / 2, duration)
    p99_change = round(after.p99_ms / before.p99_ms - 1, 3) if after.p99_ms and before.p99_ms else None
    overload = Overload(
        rate=over.rate,
        sent=over.sent,
        accepted=over.ok,
        shed=over.shed,
        accepted_p99_ms=over.p99_ms,
        shed_p99_ms=over.shed_p99_ms,
        other_errors=over.other_errors,
        generator_cpu_s=over.generator_cpu_s,
    )
    recovery = Recovery(rate=capacity / 2, before=before, after=after, p99_change=p99_change)
    return overload, recovery


def _ms(value: float | None) -> str:
    return "   n/a" if value is None else f"{value:6.1f}"


def describe(row: RateRow) -> str:
    recommend, noop, ratio = row.recommend, row.noop, row.p99_ratio
    verdict = "target met" if row.met else "target missed"
    return (
        f"{row.rate:5.0f} req/s | recommend {recommend.throughput_rps:5.1f} rps "
        f"p50 {_ms(recommend.p50_ms)} ms p99 {_ms(recommend.p99_ms)} ms errors {recommend.errors} | "
        f"no-op p50 {_ms(noop.p50_ms)} ms p99 {_ms(noop.p99_ms)} ms errors {noop.errors} | "
        f"p99 ratio {'n/a' if ratio is None else f'{ratio:.2f}'} {verdict}"
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["load"]:
        generate_load(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--rates", type=float, nargs="+", default=[20, 50, 100])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    parser.add_argument(
        "--no-admission", action="store_true", help="Serve's proxy on the port itself, no admission front"
    )
    args = parser.parse_args(argv)
    os.environ.pop("SERENDIPITY_BENCH_NO_TOKEN", None)
    with ExitStack() as stack:
        run(args, argv, stack)


def run(args: argparse.Namespace, argv: list[str], stack: ExitStack) -> None:
    port = free_port()
    deploy(args.config.resolve(), port, not args.no_admission, stack)
    base = f"http://127.0.0.1:{port}"
    load_average_before = [round(value, 2) for value in os.getloadavg()]
    rows: list[RateRow] = []
    overload: dict[str, Any] = {}  # the overload and the recovery, when some rate met the target
    with tempfile.TemporaryDirectory() as scratch:
        bodies_path = Path(scratch) / "bodies.json"
        bodies_path.write_text(json.dumps(request_bodies(args.config.resolve(), args.k)))
        for url in (f"{base}/recommend", f"{base}/noop/recommend"):
            run_load(url, bodies_path, rate=10, duration=1)  # warm-up, not recorded
        for rate in args.rates:
            row = measure(base, bodies_path, rate, args.duration)
            rows.append(row)
            print(describe(row))
        met = [row.rate for row in rows if row.met]
        if met:
            over, recovery = overload_and_recovery(base, bodies_path, max(met), args.duration)
            overload = {"overload": over, "recovery": recovery}
            print(f"overload: {over.to_json()}")
            print(f"recovery p99 change: {recovery.p99_change}")
    results = ServeLoadResult(
        command=" ".join(["python", "-m", "bench.serve_load", *argv]),
        front="Serve's proxy only" if args.no_admission else "admission front (HAProxy) -> Serve's proxy",
        duration_s=args.duration,
        k=args.k,
        cpus=os.cpu_count(),
        load_average_before=load_average_before,
        rates=rows,
        capacity_rps=max(met) if met else None,
        **overload,
        load_average_after=[round(value, 2) for value in os.getloadavg()],
        under_load=load_average_before[0] > 1.0,
        generator_cpu_s=round(
            sum(run.generator_cpu_s or 0 for row in rows for run in (row.recommend, row.noop)), 3
        ),
    )
    results.write(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

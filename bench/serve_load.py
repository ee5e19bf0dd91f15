"""Serve load benchmark: the capacity of the Serve app next to its floor (no Serve) and a no-op app.

    python -m bench.serve_load --config PIPELINE.yaml [--rates 50 100 150 ...] [--duration 8]

The pipeline config must point at a work_dir where the chain has run (retriever trained, Feast store
materialised), e.g. configs/demo.yaml after ``make demo``. Capacity is the highest offered rate answered
with zero errors and p99 <= 50 ms. Each target is stepped through ``--rates`` (lowest first, until it
misses at two rates in a row) with the same load generator, a separate process (open loop: request i
leaves at start + i/rate, rate x duration requests; one asyncio process, its CPU seconds reported):

1. the floor: ``bench.asgi_floor``, the same recommender and FastAPI app on bare uvicorn, one worker
   per core, no Serve, no front (started, measured and stopped before Serve starts);
2. on one local Serve behind the admission front (unless ``--no-admission``): the no-op app
   (``/noop``: Serve's own overhead), the app in the config's ``serving.topology`` (``/``) and in
   the other topology (``/other``).

``capacity_rps`` is the app's, ``floor.capacity_rps`` the floor's, ``capacity_ratio`` the app's over
the floor's. Then ``overload``, 3x the app's capacity (503s with Retry-After are "shed", counted apart
from other errors), and ``recovery``, capacity / 2 right after the overload next to the same rate
before it. Prints a table and writes bench/results/serve_load.json with the command and the load
average (``ServeLoadResult`` of bench/load_figures.py); never asserts.

    python -m bench.serve_load --config PIPELINE.yaml --autoscale [--load-s 60] [--duration 30]

Autoscaling instead: the recommender and the ingress autoscale between 1 and 2 replicas
(``serving.autoscaling``, its targets as configured); a quiet phase (capacity / 4), a load phase
(1.5 x capacity) and a quiet one again, capacity being ``capacity_rps`` of serve_load.json; Serve's replica
counts are sampled every second throughout (``serve.status()``). Writes bench/results/serve_autoscale.json:
the phases, the replica timeline, when a second recommender replica ran, the load average, and the
target the measured capacity suggests (Little's law, see ``suggested_target``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

from bench.load_figures import LoadRun, Overload, RateRow, Recovery, ServeLoadResult
from devtools import REPO
from devtools.services import free_port
from serving.local import answers_ready

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "serve_load.json"
AUTOSCALE_RESULTS_PATH = RESULTS_PATH.with_name("serve_autoscale.json")
RECOMMENDER, INGRESS = "RecommenderDeployment", "RecommendIngress"
REQUEST_TIMEOUT_S = 10.0
CAPACITY_P99_MS = 50.0  # capacity: the highest offered rate answered with zero errors and p99 at most this
DEFAULT_RATES = [25, 50, 75, 100, 150, 200, 250, 300, 400, 500]
MISSES_TO_STOP = 2  # a target stops stepping up after this many rates in a row missed the target


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


def deploy(
    config_path: Path, port: int, admission: bool, stack: ExitStack, other_topology: str | None = None
) -> None:
    """The apps on one local Serve (``serving.assembly.served_app``, the no-op on ``/noop`` beside the real
    one, and with ``other_topology`` the app in that topology on ``/other``); with ``admission``, the
    front (the config's ``serving.admission`` limits) on ``port`` and Serve on another loopback port
    behind it."""
    import ray

    from serendipity.config import load_config
    from serving.app import build_noop_app, compose
    from serving.assembly import served_app
    from serving.settings import AppArgs, use_throughput_env

    serving = load_config(config_path).serving
    front = serving.admission.model_copy(update={"enabled": admission, "upstream_port": free_port()})
    serve_haproxy = serving.serve_haproxy.model_copy(
        update={"stats_port": free_port(), "metrics_port": free_port(), "fallback_port": free_port()}
    )
    serving = serving.model_copy(
        update={"host": "127.0.0.1", "port": port, "admission": front, "serve_haproxy": serve_haproxy}
    )
    scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    use_throughput_env(serving, scratch)  # short: HAProxy takes socket paths of at most 97 bytes
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    args = AppArgs(config_path=str(config_path), token_env="SERENDIPITY_BENCH_NO_TOKEN")
    extra_apps = {"noop": ("/noop", build_noop_app(args))}
    if other_topology is not None:
        extra_apps["other"] = ("/other", compose(args, topology=other_topology))
    stack.enter_context(
        served_app(
            config_path,
            serving=serving,
            args=args,
            extra_apps=extra_apps,
            front_config_path=scratch / "admission.cfg",
        )
    )


SERVE_HAPROXY_SET = "serving.serve_haproxy.enabled=true"


def sets_of(args: argparse.Namespace) -> list[str]:
    """The ``--set`` overrides of a benchmark's arguments, ``--serve-haproxy`` among them."""
    return [*args.set, *([SERVE_HAPROXY_SET] if args.serve_haproxy else [])]


def config_with_sets(config_path: Path, sets: list[str], scratch: Path) -> Path:
    """``config_path``, or with ``--set KEY=VALUE`` overrides (YAML values, dotted keys) a copy of it
    saved under ``scratch``."""
    import yaml

    from serendipity.config import load_config, save_config, with_overrides

    if not sets:
        return config_path
    overrides = {}
    for item in sets:
        key, separator, value = item.partition("=")
        if not separator:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE, e.g. serving.recommender_replicas=2")
        overrides[key] = yaml.safe_load(value)
    return save_config(with_overrides(load_config(config_path), overrides), scratch / "bench.yaml")


def add_set_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a pipeline-config key for this run, e.g. serving.topology=colocated (repeatable)",
    )


def within_target(run: LoadRun) -> bool:
    return not run.errors and run.p99_ms is not None and run.p99_ms <= CAPACITY_P99_MS


def capacity_of(runs: list[LoadRun]) -> float | None:
    """The highest offered rate whose run met the capacity target; None when none did."""
    met = [run.rate for run in runs if within_target(run)]
    return max(met) if met else None


def sweep(
    targets: dict[str, str], bodies_path: Path, rates: list[float], duration: float
) -> dict[str, list[LoadRun]]:
    """Each target (name -> URL) at each rate, lowest first, until it misses the capacity target at
    ``MISSES_TO_STOP`` rates in a row (one miss on a shared machine may be noise)."""
    runs: dict[str, list[LoadRun]] = {name: [] for name in targets}
    for rate in sorted(rates):
        live = [name for name in targets if not _stopped(runs[name])]
        if not live:
            break
        for name in live:
            run = run_load(targets[name], bodies_path, rate, duration)
            runs[name].append(run)
            verdict = "met" if within_target(run) else "missed"
            print(
                f"{name:9s} {rate:5.0f} req/s | {run.throughput_rps:6.1f} rps p50 {_ms(run.p50_ms)} ms "
                f"p99 {_ms(run.p99_ms)} ms errors {run.errors} | {verdict}"
            )
    return runs


def _stopped(runs: list[LoadRun]) -> bool:
    last = runs[-MISSES_TO_STOP:]
    return len(last) == MISSES_TO_STOP and not any(within_target(run) for run in last)


def rate_rows(recommend: list[LoadRun], noop: list[LoadRun]) -> list[RateRow]:
    """The app's and the no-op's runs at the rates both ran at; ``met``: the app met the capacity target."""
    noop_at = {run.rate: run for run in noop}
    rows = []
    for run in recommend:
        if run.rate in noop_at:
            other = noop_at[run.rate]
            ratio = round(run.p99_ms / other.p99_ms, 3) if run.p99_ms and other.p99_ms else None
            rows.append(
                RateRow(rate=run.rate, recommend=run, noop=other, p99_ratio=ratio, met=within_target(run))
            )
    return rows


@contextmanager
def asgi_floor(
    config_path: Path, port: int, request_log_dir: Path | None = None, timeout_s: float = 300.0
) -> Iterator[str]:
    """``bench.asgi_floor`` (a uvicorn worker per core) on ``port``, once ready, for the ``with`` block;
    with ``request_log_dir`` its workers write the request log there, as the Serve app's replicas do."""
    command = [sys.executable, "-m", "bench.asgi_floor", "--config", str(config_path), "--port", str(port)]
    if request_log_dir is not None:
        command += ["--request-log-dir", str(request_log_dir)]
    process = subprocess.Popen(command, cwd=REPO, start_new_session=True)  # its workers in its group
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while not answers_ready(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the ASGI floor did not get ready on {url} (exit code {process.poll()})")
            time.sleep(1)
        yield url
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


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


class ReplicaSampler:
    """Replica counts by state of each deployment of one Serve application, sampled every ``interval_s``
    (``serve.status()``) in a thread for the ``with`` block; times are seconds since it started."""

    def __init__(self, app_name: str, interval_s: float = 1.0) -> None:
        self.app_name, self.interval_s = app_name, interval_s
        self.samples: list[dict[str, Any]] = []
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> ReplicaSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def now(self) -> float:
        return round(time.monotonic() - self.started, 1)

    def _sample(self) -> None:
        from ray import serve

        while not self._stop.is_set():
            application = serve.status().applications.get(self.app_name)
            if application is not None:
                replicas = {
                    name: {
                        str(getattr(state, "value", state)): count
                        for state, count in status.replica_states.items()
                    }
                    for name, status in application.deployments.items()
                }
                self.samples.append({"t_s": self.now(), "replicas": replicas})
            self._stop.wait(self.interval_s)

    def running(self, deployment: str) -> list[int]:
        return [sample["replicas"].get(deployment, {}).get("RUNNING", 0) for sample in self.samples]

    def first_running(self, deployment: str, count: int) -> float | None:
        """When ``deployment`` first had ``count`` replicas running, None if never."""
        for sample, running in zip(self.samples, self.running(deployment), strict=True):
            if running >= count:
                return sample["t_s"]
        return None


def suggested_target(load_results: Path = RESULTS_PATH, headroom: float = 0.8) -> dict[str, Any] | None:
    """The ongoing requests per replica the measured capacity suggests as autoscaling target: by Little's
    law a replica at capacity holds capacity_rps x p50 latency requests; ``headroom`` of that adds a
    replica before one saturates. None without a measured capacity."""
    if not load_results.is_file():
        return None
    measured = ServeLoadResult.read(load_results)
    rows = [row for row in measured.rates or [] if row.rate == measured.capacity_rps]
    if not measured.capacity_rps or not rows or rows[0].recommend.p50_ms is None:
        return None
    in_flight = measured.capacity_rps * rows[0].recommend.p50_ms / 1000
    return {
        "from": str(load_results.relative_to(REPO)),
        "capacity_rps": measured.capacity_rps,
        "p50_ms_at_capacity": rows[0].recommend.p50_ms,
        "in_flight_at_capacity": round(in_flight, 2),
        "headroom": headroom,
        "target_ongoing_requests": round(headroom * in_flight, 2),
    }


def autoscale(args: argparse.Namespace, argv: list[str], stack: ExitStack) -> None:
    """The autoscaling run (see the module docstring): min 1, max 2 replicas, quiet / load / quiet."""
    from serendipity.config import load_config, save_config, with_overrides

    suggestion = suggested_target()
    if suggestion is None:
        raise SystemExit(f"{RESULTS_PATH} holds no capacity_rps: run the rate benchmark first")
    capacity = suggestion["capacity_rps"]
    scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    overrides = {"serving.autoscaling.enabled": True, "serving.autoscaling.min_replicas": 1}
    config = with_overrides(
        load_config(args.config.resolve()), {**overrides, "serving.autoscaling.max_replicas": 2}
    )
    config_path = save_config(config, scratch / "autoscaling.yaml")
    port = free_port()
    deploy(config_path, port, not args.no_admission, stack)
    url = f"http://127.0.0.1:{port}/recommend"
    bodies_path = scratch / "bodies.json"
    bodies_path.write_text(json.dumps(request_bodies(config_path, args.k)))
    run_load(url, bodies_path, rate=10, duration=1)  # warm-up, not recorded
    load_average_before = [round(value, 2) for value in os.getloadavg()]
    phases: list[dict[str, Any]] = []
    plan = [("quiet", capacity / 4, args.duration), ("load", 1.5 * capacity, args.load_s)]
    plan.append(("quiet after", capacity / 4, args.duration))
    with ReplicaSampler("serendipity") as sampler:
        for name, rate, duration in plan:
            start = sampler.now()
            run = run_load(url, bodies_path, rate, duration)
            phases.append({"phase": name, "start_s": start, "end_s": sampler.now(), "load": run.to_json()})
            print(f"{name}: {rate:.0f} req/s, ok {run.ok} / {run.sent}, p99 {_ms(run.p99_ms)} ms")
    load_start = phases[1]["start_s"]
    second = sampler.first_running(RECOMMENDER, 2)
    results = {
        "command": " ".join(["python", "-m", "bench.serve_load", *argv]),
        "front": "Serve's proxy only" if args.no_admission else "admission front (HAProxy) -> Serve's proxy",
        "cpus": os.cpu_count(),
        "autoscaling": config.serving.autoscaling.model_dump(),
        "suggested_target": suggestion,
        "load_average_before": load_average_before,
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
        "under_load": load_average_before[0] > 1.0,
        "phases": phases,
        "recommender_max_running": max(sampler.running(RECOMMENDER), default=0),
        "ingress_max_running": max(sampler.running(INGRESS), default=0),
        "second_recommender_running_s_after_load_start": None
        if second is None
        else round(second - load_start, 1),
        "replicas": sampler.samples,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"recommender replicas: at most {results['recommender_max_running']} running; a second one ran "
        f"{results['second_recommender_running_s_after_load_start']} s after the load began"
    )
    print(f"wrote {args.out}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["load"]:
        generate_load(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--rates", type=float, nargs="+", default=DEFAULT_RATES)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--no-floor", action="store_true", help="leave out the ASGI floor")
    parser.add_argument("--no-overload", action="store_true", help="leave out the overload and recovery")
    parser.add_argument("--serve-haproxy", action="store_true", help=f"short for --set {SERVE_HAPROXY_SET}")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--out", type=Path, default=None, help="default: serve_load.json or serve_autoscale.json"
    )
    parser.add_argument("--autoscale", action="store_true", help="the autoscaling run (1 to 2 replicas)")
    parser.add_argument("--load-s", type=float, default=60.0, help="--autoscale: the load phase's length")
    parser.add_argument(
        "--no-admission", action="store_true", help="Serve's proxy on the port itself, no admission front"
    )
    add_set_option(parser)
    parser.add_argument(
        "--no-other-topology",
        action="store_true",
        help="deploy and measure only the configured topology (and the no-op): fewer replicas beside it",
    )
    args = parser.parse_args(argv)
    os.environ.pop("SERENDIPITY_BENCH_NO_TOKEN", None)
    args.out = args.out or (AUTOSCALE_RESULTS_PATH if args.autoscale else RESULTS_PATH)
    with ExitStack() as stack:
        (autoscale if args.autoscale else run)(args, argv, stack)


def run(args: argparse.Namespace, argv: list[str], stack: ExitStack) -> None:
    from serendipity.config import load_config

    load_average_before = [round(value, 2) for value in os.getloadavg()]
    scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    config_path = config_with_sets(args.config.resolve(), sets_of(args), scratch)
    bodies_path = scratch / "bodies.json"
    bodies_path.write_text(json.dumps(request_bodies(config_path, args.k)))
    floor: list[LoadRun] = []
    if not args.no_floor:
        with asgi_floor(config_path, free_port(), request_log_dir=scratch) as floor_url:
            run_load(f"{floor_url}/recommend", bodies_path, rate=10, duration=2)  # warm-up, not recorded
            floor_target = {"floor": f"{floor_url}/recommend"}
            floor = sweep(floor_target, bodies_path, args.rates, args.duration)["floor"]
    serving = load_config(config_path).serving
    topology = serving.topology
    other_topology = None if args.no_other_topology else "colocated" if topology == "split" else "split"
    port = free_port()
    deploy(config_path, port, not args.no_admission, stack, other_topology)
    base = f"http://127.0.0.1:{port}"
    targets = {"noop": f"{base}/noop/recommend", topology: f"{base}/recommend"}
    if other_topology is not None:
        targets[other_topology] = f"{base}/other/recommend"
    for url in targets.values():
        run_load(url, bodies_path, rate=10, duration=2)  # warm-up, not recorded
    runs = sweep(targets, bodies_path, args.rates, args.duration)
    rows = rate_rows(runs[topology], runs["noop"])
    capacity = capacity_of(runs[topology])
    floor_capacity = capacity_of(floor)
    overload: dict[str, Any] = {}  # the overload and the recovery, when some rate met the target
    if capacity and not args.no_overload:
        over, recovery = overload_and_recovery(base, bodies_path, capacity, args.duration)
        overload = {"overload": over, "recovery": recovery}
        print(f"overload: {over.to_json()}")
        print(f"recovery p99 change: {recovery.p99_change}")
    every_run = [run for target_runs in (floor, *runs.values()) for run in target_runs]
    results = ServeLoadResult(
        command=" ".join(["python", "-m", "bench.serve_load", *argv]),
        front="Serve's proxy only" if args.no_admission else "admission front (HAProxy) -> Serve's proxy",
        serve_proxy="HAProxy, direct ingress" if serving.serve_haproxy.enabled else "Serve's Python proxy",
        duration_s=args.duration,
        k=args.k,
        cpus=os.cpu_count(),
        load_average_before=load_average_before,
        rates=rows,
        capacity_rps=capacity,
        **overload,
        load_average_after=[round(value, 2) for value in os.getloadavg()],
        under_load=load_average_before[0] > 1.0,
        generator_cpu_s=round(sum(run.generator_cpu_s or 0 for run in every_run), 3),
        capacity_target={"errors": 0, "p99_ms_at_most": CAPACITY_P99_MS},
        topology=topology,
        capacity_ratio=_ratio(capacity, floor_capacity),
        floor={
            "server": "bench.asgi_floor: uvicorn, one worker per core, the request log, no Serve, no front",
            "workers": os.cpu_count(),
            "capacity_rps": floor_capacity,
            "runs": [run.to_json() for run in floor],
        },
        noop={"capacity_rps": capacity_of(runs["noop"]), "runs": [run.to_json() for run in runs["noop"]]},
        other_topology=None
        if other_topology is None
        else {
            "topology": other_topology,
            "capacity_rps": capacity_of(runs[other_topology]),
            "capacity_ratio": _ratio(capacity_of(runs[other_topology]), floor_capacity),
            "runs": [run.to_json() for run in runs[other_topology]],
        },
    )
    results.write(args.out)
    other = f", {other_topology} {capacity_of(runs[other_topology])}" if other_topology else ""
    print(
        f"capacity (p99 <= {CAPACITY_P99_MS:.0f} ms, no errors): floor {floor_capacity}, {topology} "
        f"{capacity}{other}, no-op {capacity_of(runs['noop'])} req/s"
    )
    print(f"wrote {args.out}")


def _ratio(value: float | None, floor: float | None) -> float | None:
    return round(value / floor, 3) if value and floor else None


if __name__ == "__main__":
    main()

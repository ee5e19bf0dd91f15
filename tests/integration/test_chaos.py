"""Chaos at a steady open-loop 20 req/s through the admission front (a real HAProxy) in front of real Serve,
the recommender reading a real redis-server: the only recommender replica killed (-9), one of two killed,
and the store stopped (SIGSTOP) for 15 s. A fault may cost degraded answers, never a failed one.

Asserted on counts of answers only (no non-200, the degraded share); each test prints its latency
figures (``-s`` shows them). One application ("chaos", the default serving limits and deadlines) runs
next to the session's app on the same local Serve, for this module only.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
from cluster_helpers import redis_feature_store_yaml, redis_server
from serve_helpers import AUTH, TOKEN, ServedChain, known_pairs

from devtools.services import free_port
from serendipity.config import AdmissionConfig, PipelineConfig, ServingConfig, save_config, with_overrides
from serendipity.feature_store import PROJECT_ROOT
from serving.settings import TOKEN_ENV

pytestmark = pytest.mark.slow
CHAOS_APP = "chaos"
PROD_YAML = PROJECT_ROOT / "infra" / "feast" / "prod" / "feature_store.yaml"
RATE = 20.0  # requests per second, open loop: they leave on schedule whatever the answers do
CLIENT_TIMEOUT_S = 10.0  # a request unanswered by then counts as failed
DEFAULTS = ServingConfig()
# the shipped deadlines and limits (the session's app waits longer for its functional tests)
CHAOS_SETTINGS = {
    "serving.recommender_timeout_ms": DEFAULTS.recommender_timeout_ms,
    "serving.feature_timeout_ms": DEFAULTS.feature_timeout_ms,
    "serving.store_check_interval_s": 1.0,
}


@dataclass(frozen=True)
class Answer:
    sent_s: float  # since the load began
    status: int  # 0: no answer (connection error or past CLIENT_TIMEOUT_S)
    degraded: bool
    latency_s: float


@dataclass(frozen=True)
class Chaos:
    config: PipelineConfig
    config_path: Path
    feature_store_yaml: Path
    url: str  # the front, with the app's route prefix
    bodies: list[dict]
    redis_pid: int


def deploy(chaos_config: Path, feature_store_yaml: Path, replicas: int) -> None:
    """The app of ``chaos_config`` with ``replicas`` recommender replicas (a change of count scales it)."""
    from ray import serve

    from serendipity.config import load_config
    from serving.app import ingress_limits
    from serving.deployments import RecommenderDeployment
    from serving.ingress import RecommendIngress

    serving = load_config(chaos_config).serving
    recommender = RecommenderDeployment.options(num_replicas=replicas).bind(
        str(chaos_config), str(feature_store_yaml)
    )
    options = {"ray_actor_options": {"num_cpus": 0.1, "runtime_env": {"env_vars": {TOKEN_ENV: TOKEN}}}}
    ingress = RecommendIngress.options(**ingress_limits(serving), **options)
    serve.run(ingress.bind(recommender, serving, TOKEN_ENV), name=CHAOS_APP, route_prefix=f"/{CHAOS_APP}")


def replica_pids() -> set[int]:
    from ray import serve

    handle = serve.get_deployment_handle("RecommenderDeployment", CHAOS_APP)
    return {handle.pid.remote().result(timeout_s=30) for _ in range(20)}


def wait_for(condition: Callable[[], bool], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not reached within {timeout_s} s"
        time.sleep(0.25)


def answers_serendipity(chaos: Chaos) -> bool:
    response = httpx.post(f"{chaos.url}/recommend", json=chaos.bodies[0], headers=AUTH, timeout=30)
    body = response.json() if response.status_code == 200 else {}
    return body.get("source") == "serendipity" and body.get("degraded") is False


@pytest.fixture(scope="module")
def chaos(served: ServedChain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    from ray import serve

    from features.definitions import apply_definitions
    from serendipity.feature_store import ServingFeatures
    from serving.admission import run_front

    directory = tmp_path_factory.mktemp("chaos")
    config = with_overrides(served.config, CHAOS_SETTINGS)
    config_path = save_config(config, directory / "chaos.yaml")
    with redis_server(directory) as redis_url:
        # no socket timeout in the connection string: the store's own default must bound stalled reads
        yaml_path = redis_feature_store_yaml(PROD_YAML, directory, redis_url)
        features = ServingFeatures(config, yaml_path)
        apply_definitions(features)
        features.materialize_incremental(datetime.now(UTC) + timedelta(minutes=1))
        host, port = redis_url.split(":")
        redis_pid = int(redis.Redis(host=host, port=int(port)).info("server")["process_id"])
        deploy(config_path, yaml_path, replicas=1)
        serve_port = int(served.url.rsplit(":", 1)[1])
        front = config.serving.model_copy(
            update={"port": free_port(), "admission": AdmissionConfig(upstream_port=serve_port)}
        )
        pairs = known_pairs(served, 8)
        bodies = [{"user_id": user, "context_item_id": item, "k": 5} for user, item, _ in pairs]
        try:
            with run_front(front, directory / "admission.cfg"):
                url = f"http://127.0.0.1:{front.port}/{CHAOS_APP}"
                app = Chaos(config, config_path, yaml_path, url, bodies, redis_pid)
                wait_for(lambda: answers_serendipity(app))
                yield app
        finally:
            serve.delete(CHAOS_APP)


async def _open_loop(
    chaos: Chaos, duration_s: float, faults: dict[float, Callable[[], None]]
) -> list[Answer]:
    """Requests leaving at ``RATE`` per second for ``duration_s``; ``faults[t]`` runs ``t`` s in."""
    import aiohttp

    count = int(RATE * duration_s)
    payloads = [json.dumps(body).encode() for body in chaos.bodies]
    headers = {**AUTH, "content-type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        begun = time.perf_counter()

        async def one(index: int) -> Answer:
            sent = time.perf_counter()
            try:
                payload = payloads[index % len(payloads)]
                async with session.post(f"{chaos.url}/recommend", data=payload, headers=headers) as response:
                    body = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                return Answer(sent - begun, 0, False, time.perf_counter() - sent)
            degraded = status == 200 and json.loads(body)["degraded"] is True
            return Answer(sent - begun, status, degraded, time.perf_counter() - sent)

        async def fault_at(at_s: float, fault: Callable[[], None]) -> None:
            await asyncio.sleep(at_s)
            await asyncio.to_thread(fault)

        fault_tasks = [asyncio.create_task(fault_at(at, fault)) for at, fault in faults.items()]
        tasks = []
        for index in range(count):
            delay = begun + index / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(index)))
        answers = await asyncio.gather(*tasks)
        await asyncio.gather(*fault_tasks)
        return list(answers)


def load(chaos: Chaos, duration_s: float, faults: dict[float, Callable[[], None]]) -> list[Answer]:
    return asyncio.run(_open_loop(chaos, duration_s, faults))


def figures(name: str, answers: list[Answer]) -> dict:
    """What a run cost, printed for the record (never asserted on: the machine's load varies)."""
    answered = [answer.latency_s for answer in answers if answer.status == 200]
    summary = {
        "fault": name,
        "rate_rps": RATE,
        "requests": len(answers),
        "non_200": sum(answer.status != 200 for answer in answers),
        "degraded": sum(answer.degraded for answer in answers),
        "answered_p50_ms": round(float(np.percentile(answered, 50)) * 1e3, 1) if answered else None,
        "answered_p99_ms": round(float(np.percentile(answered, 99)) * 1e3, 1) if answered else None,
        "answered_max_ms": round(max(answered) * 1e3, 1) if answered else None,
        "load_avg_1m": os.getloadavg()[0],
    }
    print(f"CHAOS {json.dumps(summary)}")
    return summary


def test_killing_the_only_replica_fails_no_request(chaos: Chaos) -> None:
    """The dead replica's requests end at the ingress's deadline with its fallback, so they never hold
    the front's slots; the replica comes back and answers serendipity again."""
    wait_for(lambda: len(replica_pids()) == 1)
    (victim,) = replica_pids()
    answers = load(chaos, 10.0, {2.0: lambda: os.kill(victim, signal.SIGKILL)})
    summary = figures("kill -9 of the only recommender replica", answers)
    assert summary["non_200"] == 0, [answer for answer in answers if answer.status != 200][:10]
    assert summary["degraded"] > 0  # the fault was felt: the ingress answered from its fallback
    wait_for(lambda: answers_serendipity(chaos))
    assert victim not in replica_pids()


def test_killing_one_of_two_replicas_degrades_at_most_one_percent(chaos: Chaos) -> None:
    deploy(chaos.config_path, chaos.feature_store_yaml, replicas=2)
    wait_for(lambda: len(replica_pids()) == 2)
    victim = min(replica_pids())
    answers = load(chaos, 10.0, {2.0: lambda: os.kill(victim, signal.SIGKILL)})
    summary = figures("kill -9 of one of two recommender replicas", answers)
    assert summary["non_200"] == 0, [answer for answer in answers if answer.status != 200][:10]
    assert summary["degraded"] <= 0.01 * summary["requests"], summary
    wait_for(lambda: len(replica_pids()) == 2)


def test_a_stalled_store_costs_latency_not_availability(chaos: Chaos) -> None:
    """Redis stopped for 15 s: every answer is a 200 (degraded while it is stopped), the explorer's
    baseline reads through the same guarded path, and the store's answers come back after."""
    wait_for(lambda: answers_serendipity(chaos))
    user, item = chaos.bodies[0]["user_id"], chaos.bodies[0]["context_item_id"]
    explore = f"{chaos.url}/explore/api/item/{item}?user_id={user}&k=5"
    # the explorer's state loads once, on its first request (which the front may time out meanwhile)
    wait_for(lambda: httpx.get(explore, headers=AUTH, timeout=60).status_code == 200, timeout_s=240)
    explored: list[httpx.Response] = []

    def stop() -> None:
        os.kill(chaos.redis_pid, signal.SIGSTOP)

    def explore_while_stopped() -> None:
        explored.append(httpx.get(explore, headers=AUTH, timeout=CLIENT_TIMEOUT_S))

    def resume() -> None:
        os.kill(chaos.redis_pid, signal.SIGCONT)

    try:
        answers = load(chaos, 19.0, {1.0: stop, 6.0: explore_while_stopped, 16.0: resume})
    finally:
        resume()
    summary = figures("Redis SIGSTOP for 15 s", answers)
    assert summary["non_200"] == 0, [answer for answer in answers if answer.status != 200][:10]
    stalled = [answer for answer in answers if 2.0 <= answer.sent_s < 15.0]
    assert stalled and all(answer.degraded for answer in stalled)
    (page,) = explored
    assert page.status_code == 200 and page.json()["baseline"]["degraded"] is True
    wait_for(lambda: answers_serendipity(chaos))

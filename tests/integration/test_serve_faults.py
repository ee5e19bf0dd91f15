"""The Serve app under overload and faults: load shedding, a hung or emptied Redis online store (a real
redis-server, SIGSTOP / SIGCONT / FLUSHALL), a store down at start-up, recommender replicas killed.

One more application ("faults", small limits, two recommender replicas, Redis online store) runs next
to the session's app on the same local Serve, for this module only.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from cluster_helpers import redis_feature_store_yaml, redis_server
from serve_helpers import AUTH, TOKEN, UNKNOWN_USER, ServedChain, known_pairs, post

from devtools.services import free_port
from serendipity.config import PipelineConfig, save_config, with_overrides
from serendipity.feature_store import PROJECT_ROOT
from serving.settings import TOKEN_ENV, AppArgs

pytestmark = pytest.mark.slow
FAULT_APP = "faults"
PROD_YAML = PROJECT_ROOT / "infra" / "feast" / "prod" / "feature_store.yaml"
REQUEST_TIMEOUT_S = 3.0
FAULT_SETTINGS = {
    "serving.max_in_flight": 2,
    "serving.max_queued_requests": 4,
    "serving.retry_after_s": 1,
    "serving.recommender_replicas": 2,
    "serving.request_timeout_s": REQUEST_TIMEOUT_S,
    "serving.feature_timeout_ms": 300,
    "serving.store_check_interval_s": 0.5,
}
ANSWER_BOUND_S = REQUEST_TIMEOUT_S + 2.0  # the deadline plus the proxy's and the client's share
CLIENTS = 2  # = max_in_flight: no request waits in the proxy's queue on top of the ingress's deadline


@dataclass(frozen=True)
class FaultApp:
    chain: ServedChain  # url: the faults app
    redis: redis.Redis
    redis_pid: int
    feature_store_yaml: Path
    startup: dict  # what the app answered while its store was down at start-up


def ready(app: FaultApp) -> int:
    return httpx.get(f"{app.chain.url}/readyz", headers=AUTH, timeout=30).status_code


def wait_for(condition: Callable[[], bool], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not reached within {timeout_s} s"
        time.sleep(0.25)


def body_of(app: FaultApp) -> dict:
    user, item, _ = known_pairs(app.chain, 1)[0]
    return {"user_id": user, "context_item_id": item, "k": 4}


def answers_serendipity(app: FaultApp) -> bool:
    response = post(app.chain, body_of(app))
    return (
        response.status_code == 200
        and response.json()["source"] == "serendipity"
        and (response.json()["degraded"] is False)
    )


def materialized_redis(app_config: PipelineConfig, directory: Path, url: str) -> Path:
    from features.definitions import apply_definitions
    from serendipity.feature_store import ServingFeatures

    yaml_path = redis_feature_store_yaml(PROD_YAML, directory, f"{url},socket_timeout=2")
    features = ServingFeatures(app_config, yaml_path)
    apply_definitions(features)
    features.materialize_incremental(datetime.now(UTC) + timedelta(minutes=1))
    return yaml_path


@pytest.fixture(scope="module")
def faults(served: ServedChain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultApp]:
    """The faults app, deployed while its Redis is stopped (SIGSTOP), then Redis resumed."""
    from ray import serve

    from serving.app import compose

    directory = tmp_path_factory.mktemp("faults")
    config = with_overrides(served.config, FAULT_SETTINGS)
    config_path = save_config(config, directory / "faults.yaml")
    with redis_server(directory) as url:
        yaml_path = materialized_redis(config, directory, url)
        host, port = url.split(":")
        client = redis.Redis(host=host, port=int(port))
        pid = int(client.info("server")["process_id"])
        chain = replace(served, config=config, config_path=config_path, url=f"{served.url}/faults")
        options = {"ray_actor_options": {"num_cpus": 0.1, "runtime_env": {"env_vars": {TOKEN_ENV: TOKEN}}}}
        args = AppArgs(config_path=str(config_path), feature_store_yaml=str(yaml_path))
        os.kill(pid, signal.SIGSTOP)
        try:
            serve.run(compose(args, options), name=FAULT_APP, route_prefix="/faults")
            app = FaultApp(chain, client, pid, yaml_path, {})
            started = time.perf_counter()
            answer = post(chain, body_of(app))
            app.startup.update(ready=ready(app), status=answer.status_code, body=answer.json())
            app.startup["elapsed_s"] = time.perf_counter() - started
        finally:
            os.kill(pid, signal.SIGCONT)
        yield app
        serve.delete(FAULT_APP)
        client.close()


def test_store_down_at_start_up_serves_degraded_then_recovers(faults: FaultApp) -> None:
    assert faults.startup["ready"] == 503
    assert faults.startup["status"] == 200 and faults.startup["body"]["degraded"] is True
    assert faults.startup["elapsed_s"] < ANSWER_BOUND_S
    wait_for(lambda: ready(faults) == 200)
    wait_for(lambda: answers_serendipity(faults))


def test_overload_is_shed_fast_with_retry_after_and_recovers(faults: FaultApp) -> None:
    body = body_of(faults)

    async def one(client: httpx.AsyncClient) -> tuple[int, str | None, float]:
        started = time.perf_counter()
        response = await client.post("/recommend", json=body, headers=AUTH)
        return response.status_code, response.headers.get("retry-after"), time.perf_counter() - started

    async def burst() -> list[tuple[int, str | None, float]]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=faults.chain.url, timeout=30, limits=limits) as client:
            return await asyncio.gather(*(one(client) for _ in range(40)))

    results = asyncio.run(burst())
    shed = [result for result in results if result[0] == 503]
    accepted = [result for result in results if result[0] == 200]
    assert shed and accepted and len(shed) + len(accepted) == len(results), results
    assert all(retry_after == "1" for _, retry_after, _ in shed)
    assert max(elapsed for *_, elapsed in shed) < 2.0
    assert max(elapsed for *_, elapsed in accepted) < ANSWER_BOUND_S
    assert all(post(faults.chain, body).status_code == 200 for _ in range(5))  # recovered


def test_admission_front_refuses_a_burst_before_it_reaches_serve(faults: FaultApp, tmp_path: Path) -> None:
    """One request at a time through the front (the ingress would take two): every 503 is the front's."""
    from serendipity.config import AdmissionConfig
    from serving.admission import run_front
    from serving.guard import OVERLOADED

    serve_port = urlsplit(faults.chain.url).port
    limits = AdmissionConfig(upstream_port=serve_port, max_active=1, max_waiting=2, max_wait_ms=30_000)
    serving = faults.chain.config.serving.model_copy(update={"port": free_port(), "admission": limits})
    body = body_of(faults)

    async def burst(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            calls = [client.post("/recommend", json=body, headers=AUTH) for _ in range(30)]
            return await asyncio.gather(*calls)

    url = f"http://127.0.0.1:{serving.port}/faults"
    with run_front(serving, tmp_path / "admission.cfg"):
        wait_for(lambda: answers_serendipity(replace(faults, chain=replace(faults.chain, url=url))))
        results = asyncio.run(burst(url))
        after = [httpx.post(f"{url}/recommend", json=body, headers=AUTH, timeout=60) for _ in range(3)]
    shed = [response for response in results if response.status_code == 503]
    accepted = [response for response in results if response.status_code == 200]
    assert shed and accepted and len(shed) + len(accepted) == len(results)
    for response in shed:
        assert response.headers["retry-after"] == str(serving.retry_after_s)
        assert response.json() == {"detail": OVERLOADED, "request_id": response.headers["x-request-id"]}
    assert all(response.json()["source"] == "serendipity" for response in accepted + after)


def test_hung_store_answers_degraded_within_the_deadline_then_recovers(faults: FaultApp) -> None:
    wait_for(lambda: answers_serendipity(faults))
    os.kill(faults.redis_pid, signal.SIGSTOP)
    try:
        for _ in range(4):
            started = time.perf_counter()
            response = post(faults.chain, body_of(faults))
            assert response.status_code == 200 and response.json()["degraded"] is True
            assert time.perf_counter() - started < ANSWER_BOUND_S
        wait_for(lambda: ready(faults) == 503, timeout_s=15)
    finally:
        os.kill(faults.redis_pid, signal.SIGCONT)
    wait_for(lambda: ready(faults) == 200)
    wait_for(lambda: answers_serendipity(faults))


def test_emptied_store_is_noticed_and_refilled_by_materialize(faults: FaultApp) -> None:
    from typer.testing import CliRunner

    from serendipity.app.commands.features import app as features_cli

    wait_for(lambda: answers_serendipity(faults))
    faults.redis.flushall()
    wait_for(lambda: ready(faults) == 503, timeout_s=15)
    # /readyz asked one replica; each replica's monitor notices within its own check interval
    wait_for(lambda: answered_degraded(faults), timeout_s=15)
    arguments = ["materialize", "--config", str(faults.chain.config_path)]
    result = CliRunner().invoke(
        features_cli, [*arguments, "--feature-store-yaml", str(faults.feature_store_yaml)]
    )
    assert result.exit_code == 0 and "full window" in result.output, result.output
    wait_for(lambda: ready(faults) == 200)
    wait_for(lambda: answers_serendipity(faults))

    def answers_the_unknown_user_from_the_refilled_store() -> bool:
        answer = post(faults.chain, {**body_of(faults), "user_id": UNKNOWN_USER}).json()
        return answer["cold_start"] is True and answer["source"] == "serendipity"

    # each replica's monitor sees the refill within its own check interval, so the next request may still
    # reach one that has not: every replica answers from the store again soon after, never a failure
    wait_for(answers_the_unknown_user_from_the_refilled_store, timeout_s=15)


def answered_degraded(app: FaultApp) -> bool:
    answer = post(app.chain, body_of(app))
    assert answer.status_code == 200, answer.text
    return answer.json()["degraded"] is True


def replica_pids() -> set[int]:
    from ray import serve

    handle = serve.get_deployment_handle("RecommenderDeployment", FAULT_APP)
    return {handle.pid.remote().result(timeout_s=30) for _ in range(30)}


def traffic_around(
    app: FaultApp, fault: Callable[[], None], after_s: float = 6.0
) -> list[tuple[int, dict, float]]:
    """(status, body, seconds) of each request ``CLIENTS`` sent from 1 s before ``fault`` till ``after_s``."""
    body = body_of(app)

    async def client_loop(client: httpx.AsyncClient, stop: asyncio.Event) -> list[tuple[int, dict, float]]:
        results = []
        while not stop.is_set():
            started = time.perf_counter()
            response = await client.post("/recommend", json=body, headers=AUTH)
            json_body = response.headers.get("content-type") == "application/json"
            answer = response.json() if json_body else {"text": response.text}
            results.append((response.status_code, answer, time.perf_counter() - started))
        return results

    async def run() -> list[tuple[int, dict, float]]:
        async with httpx.AsyncClient(base_url=app.chain.url, timeout=60) as client:
            stop = asyncio.Event()
            clients = [asyncio.create_task(client_loop(client, stop)) for _ in range(CLIENTS)]
            await asyncio.sleep(1.0)
            await asyncio.to_thread(fault)
            await asyncio.sleep(after_s)
            stop.set()
            return [result for results in await asyncio.gather(*clients) for result in results]

    return asyncio.run(run())


def test_killing_one_of_two_replicas_under_load_fails_no_request(faults: FaultApp) -> None:
    wait_for(lambda: len(replica_pids()) == 2)
    victim = min(replica_pids())
    results = traffic_around(faults, lambda: os.kill(victim, signal.SIGKILL))
    assert results and {status for status, _, _ in results} == {200}, [r for r in results if r[0] != 200]
    assert max(elapsed for *_, elapsed in results) < ANSWER_BOUND_S


def test_with_every_replica_killed_the_ingress_answers_from_its_fallback(faults: FaultApp) -> None:
    wait_for(lambda: len(replica_pids()) == 2, timeout_s=120)
    victims = replica_pids()
    results = traffic_around(faults, lambda: [os.kill(pid, signal.SIGKILL) for pid in victims])
    assert results and {status for status, _, _ in results} == {200}, [r for r in results if r[0] != 200]
    slow = [(body.get("source"), body.get("degraded"), elapsed) for _, body, elapsed in results]
    assert max(elapsed for *_, elapsed in results) < ANSWER_BOUND_S, [s for s in slow if s[2] > 1]
    fallbacks = [body for _, body, _ in results if body["degraded"] and body["source"] == "fallback"]
    assert fallbacks and all(body["items"] for body in fallbacks)
    wait_for(lambda: answers_serendipity(faults), timeout_s=120)

"""The API's failure answers (fixed messages, a request id, no replica internals), the token rule, the
ingress's own fallback and the rate-limited degraded-mode warnings: no Ray needed."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from serendipity.config import AdmissionConfig, ServeHAProxyConfig, ServingConfig
from serendipity.retrieval.deadline import DeadlineReads, RateLimitedWarning, ReadsSaturated
from serving.api import build_api
from serving.assembly import served_app
from serving.colocated import ColocatedRecommender
from serving.guard import InsecureBindError, RequestGuard, public_hosts, require_token_off_loopback
from serving.ingress import RecommendIngress, fallback_payload
from serving.models import Overloaded, RecommendRequest
from serving.settings import DEFAULT_CONFIG, PROJECT_ROOT, THROUGHPUT_ENV, TOKEN_ENV, ray_serving_env

LEAKY = "Traceback (most recent call last):\n ray::ServeReplica (pid=48213, ip=10.1.2.3) at 10.1.2.3:6379"
BODY = {"user_id": 1, "context_item_id": 2, "k": 3}


class FailingBackend:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def recommend(self, request: RecommendRequest) -> dict[str, Any]:
        raise self.error

    async def readiness(self) -> dict[str, Any]:
        raise self.error


def call(
    error: Exception, path: str, token: str | None = None, headers: dict | None = None
) -> httpx.Response:
    api = build_api(FailingBackend(error), ServingConfig(retry_after_s=3), token=token)

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            if path == "/recommend":
                return await client.post(path, json=BODY, headers=headers or {})
            return await client.get(path, headers=headers or {})

    return asyncio.run(run())


def assert_free_of_internals(response: httpx.Response) -> None:
    for leak in ("Traceback", "48213", "10.1.2.3", "6379", "ServeReplica", "pid"):
        assert leak not in response.text, response.text
    assert response.json()["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("error", "status"),
    [(RuntimeError(LEAKY), 500), (ValueError(LEAKY), 422), (Overloaded(LEAKY), 503), (TimeoutError(), 503)],
)
def test_recommend_failures_carry_fixed_messages_and_a_request_id(error: Exception, status: int) -> None:
    response = call(error, "/recommend")
    assert response.status_code == status
    assert_free_of_internals(response)
    if status == 503:
        assert response.headers["retry-after"] == "3"


def test_readiness_failure_hides_the_replica_error(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="serendipity.serving"):
        response = call(RuntimeError(LEAKY), "/readyz")
    assert response.status_code == 503 and response.json()["detail"] == "recommender not reachable"
    assert_free_of_internals(response)
    rid = response.headers["x-request-id"]
    assert any(rid in record.getMessage() and record.exc_info for record in caplog.records)


def test_a_plain_client_request_id_is_kept_and_others_replaced() -> None:
    kept = call(RuntimeError("x"), "/recommend", headers={"X-Request-ID": "abc-123"})
    assert kept.headers["x-request-id"] == "abc-123"
    replaced = call(RuntimeError("x"), "/recommend", headers={"X-Request-ID": "<script>"})
    assert replaced.headers["x-request-id"] != "<script>" and len(replaced.headers["x-request-id"]) == 32


def test_docs_and_schema_follow_the_token() -> None:
    for path in ("/docs", "/openapi.json"):
        assert call(RuntimeError("x"), path, token="t0k").status_code == 401
        assert call(RuntimeError("x"), path, token="t0k", headers={"Authorization": "Bearer t0k"}).is_success
        assert call(RuntimeError("x"), path, token=None).is_success


def test_browsers_get_no_icon_without_a_token_and_nothing_else() -> None:
    assert call(RuntimeError("x"), "/favicon.ico", token="t0k").status_code == 204  # no console error
    assert call(RuntimeError("x"), "/favicon.ico/x", token="t0k").status_code == 401
    assert call(RuntimeError("x"), "/readyz", token="t0k").status_code == 401


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_needs_no_token(host: str) -> None:
    require_token_off_loopback(host, None, TOKEN_ENV)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.5", "::", "serve.example.com"])
def test_no_token_beyond_loopback_refuses_to_start_and_names_the_variable(host: str) -> None:
    with pytest.raises(InsecureBindError, match=TOKEN_ENV):
        require_token_off_loopback(host, None, TOKEN_ENV)
    require_token_off_loopback(host, "a-token", TOKEN_ENV)


def test_ingress_fallback_skips_named_items_and_stops_at_k() -> None:
    popular = [{"item_id": item, "score": 0.0, "cluster_id": 1} for item in range(10)]
    request = RecommendRequest(user_id=1, context_item_id=0, k=3, history=[1, 3])
    payload = fallback_payload(popular, request)
    assert [item["item_id"] for item in payload["items"]] == [2, 4, 5]
    assert payload["degraded"] is True and payload["source"] == "fallback"


def test_degraded_warnings_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.degraded")
    warn = RateLimitedWarning(logger, interval_s=60)
    with caplog.at_level(logging.WARNING, logger="test.degraded"):
        for _ in range(100):
            warn("store down")
        assert [record.getMessage() for record in caplog.records] == ["store down"]
        warn._last -= 61  # the interval passed
        warn("store down")
    assert caplog.records[-1].getMessage() == "store down (99 more like it since the last warning)"


def test_a_read_past_its_deadline_raises_timeout_instead_of_hanging() -> None:
    release = threading.Event()
    reads = DeadlineReads(timeout_s=0.05)
    with pytest.raises(TimeoutError):
        reads.call(release.wait, 30)
    release.set()
    assert reads.call(lambda: 7) == 7


def test_reads_in_flight_are_bounded_and_refused_at_once_never_queued() -> None:
    """A stalled store holds at most ``max_in_flight`` threads; later reads fail at once (no queue that
    would hit the store as a burst when it resumes), and a freed slot serves again."""
    release = threading.Event()
    started: list[int] = []
    reads = DeadlineReads(timeout_s=0.05, max_in_flight=2)

    def stalled(n: int) -> int:
        started.append(n)
        release.wait(30)
        return n

    for n in range(2):
        with pytest.raises(TimeoutError):
            reads.call(stalled, n)
    for n in range(2, 6):
        with pytest.raises(ReadsSaturated):
            reads.call(stalled, n)
    release.set()
    deadline = threading.Event()
    for _ in range(100):  # the two stalled reads end; their slots come back
        try:
            assert reads.call(lambda: 7) == 7
            break
        except ReadsSaturated:
            deadline.wait(0.02)
    else:
        pytest.fail("the slots of finished reads never came back")
    assert sorted(started) == [0, 1]  # the refused reads never ran, then or later


@pytest.mark.parametrize(
    "settings",
    [
        {"host": "127.0.0.1\nbind 0.0.0.0:80"},
        {"host": "a b"},
        {"host": ""},
        {"port": 0},
        {"port": 70000},
        {"port": 8000, "admission": AdmissionConfig(upstream_port=8000)},
        {"port": 65535},
        {"port": 8000, "serve_haproxy": ServeHAProxyConfig(enabled=True, stats_port=8001)},  # Serve's port
        {"serve_haproxy": ServeHAProxyConfig(enabled=True, stats_port=9101)},  # its own metrics port
        {
            "admission": AdmissionConfig(metrics_port=8404),
            "serve_haproxy": ServeHAProxyConfig(enabled=True, stats_port=8404),
        },
    ],
)
def test_serving_listener_settings_are_validated(settings: dict) -> None:
    with pytest.raises(ValidationError):
        ServingConfig(**settings)


def test_serves_haproxy_is_rays_environment_before_it_starts(tmp_path) -> None:
    assert ray_serving_env(ServingConfig()) == THROUGHPUT_ENV  # off: Serve's Python proxy
    options = ServeHAProxyConfig(enabled=True, stats_port=9001, metrics_port=9002)
    serving = ServingConfig(serve_haproxy=options)
    env = ray_serving_env(serving, tmp_path)
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1" and THROUGHPUT_ENV.items() <= env.items()
    assert (env["RAY_SERVE_HAPROXY_STATS_PORT"], env["RAY_SERVE_HAPROXY_METRICS_PORT"]) == ("9001", "9002")
    files = {name: value for name, value in env.items() if name.endswith(("_LOC", "_PATH", "_BASE", "_FILE"))}
    assert len(files) == 5 and all(value.startswith(str(tmp_path)) for value in files.values())
    assert not any(name.endswith(("_LOC", "_PATH", "_BASE", "_FILE")) for name in ray_serving_env(serving))


def test_the_token_rule_covers_the_admission_fronts_public_host() -> None:
    """Behind the front Serve's proxy is on loopback; the app is still public through the front."""
    public = ServingConfig(host="0.0.0.0")
    with pytest.raises(InsecureBindError, match="0.0.0.0"):
        require_token_off_loopback(public_hosts(public, "127.0.0.1"), None, TOKEN_ENV)
    require_token_off_loopback(public_hosts(public, "127.0.0.1"), "a-token", TOKEN_ENV)
    require_token_off_loopback(public_hosts(ServingConfig(), "127.0.0.1"), None, TOKEN_ENV)


def ingress_class() -> type:
    """The ingress class itself, without Serve's ASGI wrapper (whose ``__init__`` is a coroutine)."""
    return RecommendIngress.func_or_class.__mro__[1]


def test_the_ingress_refuses_to_start_tokenless_behind_a_public_front(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(InsecureBindError, match="0.0.0.0"):
        ingress_class()(object(), ServingConfig(host="0.0.0.0"), TOKEN_ENV)


class StalledRecommender:
    """A handle whose calls never answer (a replica that died mid-request, or hangs)."""

    def __init__(self) -> None:
        self.cancelled = 0
        self.recommend = self
        self.popular_items = self

    def remote(self, *args: Any) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        future.cancel = self._count_cancel(future.cancel)  # type: ignore[method-assign]
        return future

    def _count_cancel(self, cancel: Any) -> Any:
        def counted(*args: Any) -> bool:
            self.cancelled += 1
            return cancel(*args)

        return counted


def test_a_stalled_recommender_costs_the_deadline_then_the_fallback() -> None:
    stalled = StalledRecommender()
    ingress = ingress_class()(stalled, ServingConfig(recommender_timeout_ms=50), TOKEN_ENV)
    ingress._popular = [{"item_id": item, "score": 0.0, "cluster_id": 1} for item in range(5)]

    async def run() -> dict[str, Any]:
        return await asyncio.wait_for(ingress.recommend(RecommendRequest(**BODY)), timeout=5)

    answer = asyncio.run(run())
    assert answer["degraded"] is True and answer["source"] == "fallback"
    assert [item["item_id"] for item in answer["items"]] == [0, 1, 3]
    assert stalled.cancelled >= 1  # the call to the replica was cancelled, not left running


class CountingApp:
    def __init__(self) -> None:
        self.started = 0
        self.release: asyncio.Event | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.started += 1
        self.release = self.release or asyncio.Event()
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


@pytest.mark.parametrize("path", ["/recommend", "/explore/api/search", "/anything"])
def test_the_in_flight_limit_covers_every_path_but_health_and_docs(path: str) -> None:
    app = CountingApp()
    guard = RequestGuard(app, token=None, max_body_bytes=1024, max_in_flight=1)

    async def run() -> tuple[int, int, int]:
        transport = httpx.ASGITransport(app=guard)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            held = asyncio.create_task(client.get(path))
            while app.started < 1:
                await asyncio.sleep(0.01)
            refused = await client.get(path)
            assert app.release is not None
            health = asyncio.create_task(client.get("/healthz"))  # passes the limit, then waits too
            while app.started < 2:
                await asyncio.sleep(0.01)
            app.release.set()
            return refused.status_code, (await held).status_code, (await health).status_code

    assert asyncio.run(run()) == (503, 200, 200)


def test_serve_stop_never_trusts_a_reused_pid(tmp_path) -> None:
    """The endpoint record names its process by pid and start time: a live process that merely got the
    same pid is not ours (serve stop would end its whole process group)."""
    import json
    import os
    from pathlib import Path

    from serendipity.config import load_config
    from serving.local import Endpoint, endpoint_file, process_start, read_endpoint

    repo = Path(__file__).resolve().parents[2]
    config = load_config(repo / "configs" / "test.yaml", overrides={"work_dir": str(tmp_path / "work")})
    path = endpoint_file(config)
    path.parent.mkdir(parents=True)
    ours = Endpoint("http://127.0.0.1:1", os.getpid(), "log", "c.yaml", process_start(os.getpid()))
    path.write_text(json.dumps(ours.__dict__))
    assert read_endpoint(config) == ours
    path.write_text(json.dumps({**ours.__dict__, "started": "1"}))  # same pid, another process
    assert read_endpoint(config) is None


class SlowRecommender:
    """A handle that answers after ``delay_s``."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.recommend = self
        self.popular_items = self

    def remote(self, *args: Any) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        answer = {"items": [], "cluster": None, "reasoning": None, "source": "serendipity", "degraded": False}
        loop.call_later(self.delay_s, lambda: future.done() or future.set_result(answer))
        return future


def test_a_fresh_ingress_waits_for_a_real_answer_then_keeps_the_tight_deadline() -> None:
    """With nothing to fall back on yet, the first answer is worth request_timeout_s; once the ingress
    keeps popular items, the recommender gets recommender_timeout_ms."""
    serving = ServingConfig(recommender_timeout_ms=20, request_timeout_s=30)
    ingress = ingress_class()(SlowRecommender(delay_s=0.5), serving, TOKEN_ENV)

    async def run() -> dict[str, Any]:
        return await ingress.recommend(RecommendRequest(**BODY))

    assert asyncio.run(run())["source"] == "serendipity"  # fresh: waited for it
    ingress._popular = [{"item_id": 9, "score": 0.0, "cluster_id": 1}]
    assert asyncio.run(run())["source"] == "fallback"  # with a fallback: the tight deadline


class StalledColocated(ColocatedRecommender.func_or_class.__mro__[1]):  # without Serve's ASGI wrapper
    """The colocated deployment with a recommender that answers after ``delay_s`` (no model loaded)."""

    def __init__(self, serving: ServingConfig, delay_s: float) -> None:
        self._serving, self.delay_s, self.cancelled = serving, delay_s, False

    async def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return {"items": [], "cluster": None, "reasoning": None, "source": "serendipity", "degraded": False}

    def popular_items(self, k: int) -> list[dict[str, Any]]:
        return [{"item_id": item, "score": 0.0, "cluster_id": 1} for item in range(k)]


def test_the_colocated_deployment_keeps_the_split_ingress_deadline_and_fallback() -> None:
    serving = ServingConfig(recommender_timeout_ms=50)
    stalled, prompt = StalledColocated(serving, delay_s=30), StalledColocated(serving, delay_s=0)

    async def ask(replica: StalledColocated) -> dict[str, Any]:
        return await asyncio.wait_for(replica.recommend(RecommendRequest(**BODY)), timeout=5)

    answer = asyncio.run(ask(stalled))
    assert answer["degraded"] is True and answer["source"] == "fallback"
    assert [item["item_id"] for item in answer["items"]] == [0, 1, 3]  # context item 2 left out, k=3
    assert stalled.cancelled  # the late answer was cancelled, not left running
    assert asyncio.run(ask(prompt))["source"] == "serendipity"


def test_serve_haproxy_is_refused_when_ray_was_started_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_SERVE_ENABLE_HA_PROXY", raising=False)
    serving = ServingConfig(serve_haproxy=ServeHAProxyConfig(enabled=True))
    app = served_app(PROJECT_ROOT / DEFAULT_CONFIG, serving=serving)
    with pytest.raises(RuntimeError, match="RAY_SERVE_ENABLE_HA_PROXY=1"), app:
        pass

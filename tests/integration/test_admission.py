"""The admission front (serving/admission.py): a real HAProxy in front of the real ingress API (served by
uvicorn over a backend that holds /recommend until the test releases it), over real HTTP."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from cluster_helpers import free_port

from serendipity.serving_config import AdmissionConfig, ServingConfig
from serving.admission import (
    UNAVAILABLE,
    AdmissionError,
    haproxy_binary,
    render_config,
    run_front,
    write_config,
)
from serving.api import build_api
from serving.guard import OVERLOADED

BODY = {"user_id": 1, "context_item_id": 2, "k": 3}


class HeldBackend:
    """Answers /recommend only once ``release`` is called; counts what reached it."""

    def __init__(self) -> None:
        self.arrived = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._released: asyncio.Event | None = None

    async def recommend(self, request):
        self.loop = asyncio.get_running_loop()
        self._released = self._released or asyncio.Event()
        self.arrived += 1
        await self._released.wait()
        return {"items": [], "cluster": None, "reasoning": None, "source": "fallback", "degraded": False}

    async def readiness(self):
        return {"ready": True}

    def release(self) -> None:
        if self.loop is not None and self._released is not None:
            self.loop.call_soon_threadsafe(self._released.set)


@dataclass
class Front:
    url: str
    backend: HeldBackend


def _serving(port: int, upstream: int, **admission) -> ServingConfig:
    front = AdmissionConfig(upstream_port=upstream, **admission)
    return ServingConfig(port=port, retry_after_s=3, max_in_flight=64, admission=front)


@pytest.fixture
def front(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Front]:
    """One request at a time, one waiting (for up to 30 s), unless an indirect parameter says otherwise."""
    limits = {"max_active": 1, "max_waiting": 1, "max_wait_ms": 30_000, **getattr(request, "param", {})}
    serving = _serving(free_port(), free_port(), **limits)
    backend = HeldBackend()
    server = uvicorn.Server(
        uvicorn.Config(build_api(backend, serving, token=None), host="127.0.0.1", port=serving.serve_port)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with run_front(serving, tmp_path / "admission.cfg"):
            yield Front(f"http://127.0.0.1:{serving.port}", backend)
    finally:
        backend.release()
        server.should_exit = True
        thread.join(timeout=10)


async def _burst(url: str, count: int, headers: dict | None = None) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        calls = [client.post("/recommend", json=BODY, headers=headers) for _ in range(count)]
        return await asyncio.gather(*calls)


def test_overload_is_refused_at_the_front_and_the_rest_is_served(front: Front) -> None:
    async def scenario() -> tuple[list[httpx.Response], httpx.Response, list[httpx.Response]]:
        async with httpx.AsyncClient(base_url=front.url, timeout=30) as client:
            held = [asyncio.create_task(client.post("/recommend", json=BODY)) for _ in range(2)]
            while front.backend.arrived < 1:  # one at the backend; the other waits at the front
                await asyncio.sleep(0.02)
            refused = await _burst(front.url, 6, headers={"X-Request-ID": "client-id.7"})
            ready = await client.get("/readyz")  # not gated: passes while /recommend is full
            front.backend.release()
            return refused, ready, await asyncio.gather(*held)

    refused, ready, held = asyncio.run(scenario())
    for response in refused:
        assert response.status_code == 503 and response.headers["retry-after"] == "3"
        assert response.json() == {"detail": OVERLOADED, "request_id": "client-id.7"}
        assert response.headers["x-request-id"] == "client-id.7"
    assert ready.status_code == 200
    assert [response.status_code for response in held] == [200, 200]
    assert front.backend.arrived == 2  # the refused six never reached Python


@pytest.mark.parametrize("front", [{"max_wait_ms": 200}], indirect=True)
def test_a_request_past_max_wait_gets_503_and_ids_are_given(front: Front) -> None:
    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=front.url, timeout=30) as client:
            held = asyncio.create_task(client.post("/recommend", json=BODY))
            while front.backend.arrived < 1:
                await asyncio.sleep(0.02)
            waited = await client.post("/recommend", json=BODY)  # queued, then past max_wait_ms
            front.backend.release()
            return [waited, await held]

    waited, held = asyncio.run(scenario())
    assert waited.status_code == 503 and waited.headers["retry-after"] == "3"
    assert waited.json()["detail"] == UNAVAILABLE
    assert waited.json()["request_id"] == waited.headers["x-request-id"] and waited.headers["x-request-id"]
    assert held.status_code == 200 and held.headers["x-request-id"]  # the front's id, kept by the ingress


def test_a_dead_upstream_gets_a_json_error_without_internals(tmp_path: Path) -> None:
    serving = _serving(free_port(), free_port())  # nothing listens upstream
    with run_front(serving, tmp_path / "admission.cfg"):
        response = httpx.post(f"http://127.0.0.1:{serving.port}/recommend", json=BODY, timeout=30)
    assert response.status_code in (502, 503)
    assert set(response.json()) == {"detail", "request_id"}
    assert "127.0.0.1" not in response.text and str(serving.serve_port) not in response.text


def test_config_is_checked_by_haproxy_and_follows_the_limits(tmp_path: Path) -> None:
    serving = _serving(9000, 9100, max_active=5, max_waiting=7, max_wait_ms=250)
    text = write_config(serving, tmp_path / "admission.cfg").read_text()  # `haproxy -c` passed
    assert "bind 127.0.0.1:9000" in text and "server serve 127.0.0.1:9100 maxconn 5" in text
    assert "queue(gated) ge 7" in text and "timeout queue 250ms" in text
    assert "bind 0.0.0.0:9000" in render_config(serving, listen_host="0.0.0.0")


def test_serve_port_and_misconfiguration() -> None:
    assert ServingConfig(port=8000).serve_port == 8001
    assert ServingConfig(port=8000, admission=AdmissionConfig(upstream_port=9001)).serve_port == 9001
    off = ServingConfig(port=8000, admission=AdmissionConfig(enabled=False))
    assert off.serve_port == 8000
    with pytest.raises(AdmissionError, match="enabled is false"):
        render_config(off)
    with pytest.raises(AdmissionError, match="haproxy_binary"):
        haproxy_binary("/nonexistent/haproxy")

"""The admission front (serving/admission.py): a real HAProxy in front of the real ingress API (served by
uvicorn over a backend that holds /recommend until the test releases it), over real HTTP."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from devtools.services import free_port
from serendipity.config import AdmissionConfig, ServingConfig
from serving.admission import (
    UNAVAILABLE,
    AdmissionError,
    InsecureFrontError,
    haproxy_binary,
    render_config,
    run_front,
    stop_gracefully,
    write_config,
)
from serving.api import build_api
from serving.guard import CLIENT_REQUEST_ID, OVERLOADED
from serving.settings import TOKEN_ENV

BODY = {"user_id": 1, "context_item_id": 2, "k": 3}


class HeldBackend:
    """Answers /recommend only once ``release`` is called; counts what reached it."""

    def __init__(self) -> None:
        self.arrived = 0
        self.open = False  # released: answer at once
        self.loop: asyncio.AbstractEventLoop | None = None
        self._released: asyncio.Event | None = None

    async def recommend(self, request):
        self.loop = asyncio.get_running_loop()
        self._released = self._released or asyncio.Event()
        self.arrived += 1
        if not self.open:
            await self._released.wait()
        return {"items": [], "cluster": None, "reasoning": None, "source": "fallback", "degraded": False}

    async def readiness(self):
        return {"ready": True}

    def release(self) -> None:
        self.open = True
        if self.loop is not None and self._released is not None:
            self.loop.call_soon_threadsafe(self._released.set)


@dataclass
class Front:
    url: str
    backend: HeldBackend
    process: subprocess.Popen
    port: int


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
        with run_front(serving, tmp_path / "admission.cfg") as process:
            yield Front(f"http://127.0.0.1:{serving.port}", backend, process, serving.port)
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
    with pytest.raises(AdmissionError, match="not a host"):
        render_config(serving, listen_host="127.0.0.1:80\n    bind 0.0.0.0")


def test_serve_port_and_misconfiguration() -> None:
    assert ServingConfig(port=8000).serve_port == 8001
    assert ServingConfig(port=8000, admission=AdmissionConfig(upstream_port=9001)).serve_port == 9001
    off = ServingConfig(port=8000, admission=AdmissionConfig(enabled=False))
    assert off.serve_port == 8000
    with pytest.raises(AdmissionError, match="enabled is false"):
        render_config(off)
    with pytest.raises(AdmissionError, match="haproxy_binary"):
        haproxy_binary("/nonexistent/haproxy")


def raw_request(port: int, head: str, body: bytes = b"", timeout_s: float = 30) -> tuple[int, dict, bytes]:
    """One request written byte for byte (no client normalising its path): (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as conn:
        conn.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    header_block, _, payload = data.partition(b"\r\n\r\n")
    lines = header_block.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, payload


def post_head(path: str, length: int, extra: str = "") -> str:
    return (
        f"POST {path} HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\n"
        f"Content-Length: {length}\nConnection: close\n{extra}"
    )


async def _hold_one(front: Front, client: httpx.AsyncClient) -> asyncio.Task:
    held = asyncio.create_task(client.post("/recommend", json=BODY))
    while front.backend.arrived < 1:
        await asyncio.sleep(0.02)
    return held


@pytest.mark.parametrize("front", [{"max_waiting": 1, "max_wait_ms": 200}], indirect=True)
@pytest.mark.parametrize("path", ["/recommen%64", "/%72ecommend", "/explore/api/search?q=a"])
def test_an_encoded_or_other_path_is_limited_like_recommend(front: Front, path: str) -> None:
    """Only the health/readiness/docs paths pass unlimited; `/recommen%64` (Starlette decodes it to
    /recommend) and the explorer wait for a slot like /recommend, and past max_wait_ms get 503."""
    body = json.dumps(BODY).encode()

    async def scenario() -> tuple[int, dict, bytes]:
        async with httpx.AsyncClient(base_url=front.url, timeout=30) as client:
            held = await _hold_one(front, client)
            method = "GET" if path.startswith("/explore") else "POST"
            head = (
                post_head(path, len(body))
                if method == "POST"
                else f"GET {path} HTTP/1.1\nHost: x\nConnection: close\n"
            )
            answer = await asyncio.to_thread(raw_request, front.port, head, body if method == "POST" else b"")
            front.backend.release()
            await held
            return answer

    status, headers, payload = asyncio.run(scenario())
    assert status == 503 and headers["retry-after"] == "3", payload
    assert front.backend.arrived == 1  # the encoded path never reached the backend
    status, _, _ = raw_request(front.port, "GET /healthz HTTP/1.1\nHost: x\nConnection: close\n")
    assert status == 200


@pytest.mark.parametrize("front", [{"max_waiting": 1, "max_wait_ms": 5_000}], indirect=True)
def test_slow_bodies_hold_no_slot(front: Front) -> None:
    """Clients that send their headers and dribble their body wait at the front, not in a slot: a
    normal request next to them is answered."""
    front.backend.release()  # the backend answers at once
    slow = []
    try:
        for _ in range(6):  # more than max_active + max_waiting
            conn = socket.create_connection(("127.0.0.1", front.port), timeout=30)
            conn.sendall(post_head("/recommend", 64).replace("\n", "\r\n").encode() + b"\r\n" + b'{"user_id"')
            slow.append(conn)
        time.sleep(0.3)
        response = httpx.post(f"{front.url}/recommend", json=BODY, timeout=30)
    finally:
        for conn in slow:
            conn.close()
    assert response.status_code == 200, response.text
    assert front.backend.arrived == 1  # none of the slow requests reached the backend


def test_a_request_id_with_a_comma_is_never_reflected_raw(tmp_path: Path) -> None:
    """HAProxy splits headers at commas; the id must be judged and echoed whole, or replaced."""
    serving = _serving(free_port(), free_port())  # nothing upstream: the front's own JSON 503
    hostile = 'ok,"}, "injected": {"x": "'
    with run_front(serving, tmp_path / "admission.cfg"):
        head = post_head("/recommend", 2, f"X-Request-ID: {hostile}\n")
        status, headers, payload = raw_request(serving.port, head, b"{}")
    assert status in (502, 503)
    answer = json.loads(payload)  # valid JSON: nothing injected
    assert set(answer) == {"detail", "request_id"}
    assert answer["request_id"] == headers["x-request-id"] != hostile
    assert CLIENT_REQUEST_ID.fullmatch(answer["request_id"].encode())


def test_a_stopping_front_finishes_the_request_it_holds(front: Front) -> None:
    """Graceful stop (a rollout): the held request is answered, not reset."""
    result: dict = {}

    def call() -> None:
        try:
            result["response"] = httpx.post(f"{front.url}/recommend", json=BODY, timeout=30)
        except httpx.HTTPError as error:
            result["error"] = error

    thread = threading.Thread(target=call)
    thread.start()
    while front.backend.arrived < 1:
        time.sleep(0.02)
    threading.Timer(0.5, front.backend.release).start()
    stop_gracefully(front.process, grace_s=15)
    thread.join(timeout=30)
    assert "error" not in result, result
    assert result["response"].status_code == 200


def test_the_front_refuses_a_tokenless_public_listener(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token is checked by the ingress, which takes serving.host for the public address: a front
    beyond loopback that the ingress does not know of, or without the token, never starts."""
    serving = _serving(free_port(), free_port())
    monkeypatch.setenv(TOKEN_ENV, "a-token")
    with pytest.raises(InsecureFrontError, match="serving.host"):
        run_front(serving, tmp_path / "a.cfg", "0.0.0.0").__enter__()
    monkeypatch.delenv(TOKEN_ENV)
    public = serving.model_copy(update={"host": "0.0.0.0"})
    with pytest.raises(AdmissionError, match=TOKEN_ENV):
        run_front(public, tmp_path / "b.cfg").__enter__()


def test_request_ids_are_plain_tokens() -> None:
    assert re.fullmatch(r"\^.*\$", render_config(_serving(9000, 9100)).split("-m reg ")[1].split()[0])


def test_the_sidecar_turns_sigterm_into_a_graceful_stop(tmp_path: Path) -> None:
    """`serendipity serve admission` (serve_front) as a container's main process: the SIGTERM of a
    rollout lets the request it holds finish instead of resetting it."""
    import os
    import signal
    import sys

    serving = _serving(free_port(), free_port())
    backend = HeldBackend()
    server = uvicorn.Server(
        uvicorn.Config(build_api(backend, serving, token=None), host="127.0.0.1", port=serving.serve_port)
    )
    threading.Thread(target=server.run, daemon=True).start()
    code = (
        "import sys; from pathlib import Path; from serendipity.config import ServingConfig; "
        "from serving.admission import serve_front; "
        "sys.exit(serve_front(ServingConfig.model_validate_json(sys.argv[1]), Path(sys.argv[2])))"
    )
    sidecar = subprocess.Popen(
        [sys.executable, "-c", code, serving.model_dump_json(), str(tmp_path / "admission.cfg")],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    result: dict = {}
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{serving.port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)

        def call() -> None:
            try:
                url = f"http://127.0.0.1:{serving.port}/recommend"
                result["response"] = httpx.post(url, json=BODY, timeout=30)
            except httpx.HTTPError as error:
                result["error"] = error

        thread = threading.Thread(target=call)
        thread.start()
        while backend.arrived < 1:
            time.sleep(0.02)
        sidecar.send_signal(signal.SIGTERM)
        threading.Timer(0.5, backend.release).start()
        thread.join(timeout=30)
        assert sidecar.wait(timeout=30) == 0
    finally:
        if sidecar.poll() is None:
            sidecar.kill()
        backend.release()
        server.should_exit = True
    assert "error" not in result, result
    assert result["response"].status_code == 200

"""The demo's endpoint (`serendipity serve start|query|stop`) on the real serving chain, over real HTTP,
and the colocated topology on the session's Serve."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx
import psutil
import pytest
import yaml
from serve_helpers import AUTH, TOKEN, ServedChain, known_pairs, post

from devtools.services import free_port
from serendipity.config import load_config
from serving.demo_queries import demo_requests
from serving.local import endpoint_file, read_endpoint, serve_haproxy_dir
from serving.models import RecommendResponse
from serving.settings import TOKEN_ENV

pytestmark = pytest.mark.slow


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "serendipity.app.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, env={**os.environ})


REPLICA_PORTS = range(30000, 31001)  # Ray 2.60's direct-ingress HTTP ports


def _config_on_free_ports(retrieval_chain: Path, tmp_path: Path, serve_haproxy: bool = False) -> Path:
    data = yaml.safe_load(retrieval_chain.read_text())
    front = {"upstream_port": free_port()}  # Serve's proxy, on loopback behind the admission front
    data["serving"] = {**data.get("serving", {}), "port": free_port(), "admission": front}
    if serve_haproxy:  # as configs/demo.yaml serves
        ports = ("stats_port", "metrics_port", "fallback_port")
        data["serving"]["serve_haproxy"] = {"enabled": True, **{name: free_port() for name in ports}}
    config_path = tmp_path / "serve.yaml"
    config_path.write_text(yaml.safe_dump(data))
    return config_path


def _listeners() -> dict[str, list[tuple[str, int]]]:
    """(host, port) of every listening TCP socket of Ray's and HAProxy's processes, by process name."""
    found: dict[str, list[tuple[str, int]]] = {}
    for process in psutil.process_iter(["name"]):
        try:
            if not process.name().startswith(("ray::", "haproxy")):
                continue
            sockets = process.net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for connection in sockets:
            if connection.status == psutil.CONN_LISTEN:
                found.setdefault(process.name(), []).append((connection.laddr.ip, connection.laddr.port))
    return found


def test_start_query_stop(retrieval_chain: Path, tmp_path: Path) -> None:
    """The demo's way: Ray's HAProxy (``serving.serve_haproxy``) forwarding to the ingress replica's own
    HTTP port, which listens on loopback only; stopping leaves none of it behind."""
    config_path = _config_on_free_ports(retrieval_chain, tmp_path, serve_haproxy=True)
    config = load_config(config_path)
    try:
        started = _cli("serve", "start", "--config", str(config_path))
        assert started.returncode == 0, started.stdout + started.stderr
        endpoint = read_endpoint(config)
        assert endpoint is not None and f":{config.serving.port}" in endpoint.url
        assert endpoint.url in started.stdout and "serve stop" in started.stdout

        listeners = _listeners()
        replica_ports = [
            (host, port)
            for name, bound in listeners.items()
            if name.startswith("ray::ServeReplica")
            for host, port in bound
            if port in REPLICA_PORTS
        ]
        assert replica_ports, listeners  # the ingress replica answers HTTP itself: direct ingress is on
        assert {host for host, _ in replica_ports} == {"127.0.0.1"}, replica_ports  # never beyond loopback
        serve_port = ("127.0.0.1", config.serving.serve_port)
        haproxies = [name for name, bound in listeners.items() if serve_port in bound]
        assert haproxies and all(name.startswith("haproxy") for name in haproxies), listeners
        assert any(serve_haproxy_dir(config).rglob("haproxy.cfg"))  # its files where serve run put them

        again = _cli("serve", "start", "--config", str(config_path))
        assert again.returncode == 0 and read_endpoint(config) == endpoint  # reused, not a second app

        queried = _cli("serve", "query", "--config", str(config_path), "--count", "3", "--k", "4")
        assert queried.returncode == 0, queried.stdout + queried.stderr
        requests = demo_requests(config, 3, 4)
        for request in requests:
            assert f"user {request['user_id']} watching item {request['context_item_id']}" in queried.stdout
        assert queried.stdout.count("  -> item ") == 4 * len(requests)
        assert "source=serendipity" in queried.stdout
    finally:
        stopped = _cli("serve", "stop", "--config", str(config_path))
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert read_endpoint(config) is None and not endpoint_file(config).exists()
    for port in (config.serving.port, config.serving.serve_port):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0  # Serve's HAProxy went with the app
    state = str(serve_haproxy_dir(config))
    assert not [p.pid for p in psutil.process_iter(["cmdline"]) if state in " ".join(p.info["cmdline"] or ())]


def test_the_app_ends_when_its_admission_front_does(retrieval_chain: Path, tmp_path: Path) -> None:
    """Nothing reaches the app without its front: a front that dies takes the app down (to be restarted)."""
    config_path = _config_on_free_ports(retrieval_chain, tmp_path)
    config = load_config(config_path)
    try:
        started = _cli("serve", "start", "--config", str(config_path))
        assert started.returncode == 0, started.stdout + started.stderr
        endpoint = read_endpoint(config)
        assert endpoint is not None
        (front,) = [child for child in psutil.Process(endpoint.pid).children() if child.name() == "haproxy"]
        front.kill()
        deadline = time.monotonic() + 120
        while read_endpoint(config) is not None:
            assert time.monotonic() < deadline, "the app outlived its front"
            time.sleep(1)
        log = Path(endpoint.log_path).read_text()
        assert "the admission front (HAProxy) exited" in log, log[-2000:]
    finally:
        _cli("serve", "stop", "--config", str(config_path))


def test_colocated_topology_answers_like_the_split_one_and_hot_swaps_without_a_drop(
    served: ServedChain,
) -> None:
    """``serving.topology: colocated`` (API and recommender in one deployment) beside the session's split
    app on the same Serve: ready, answers inside the feature's cluster, the API's own 422, and a hot swap
    under traffic that drops no request."""
    from ray import serve

    from serving.app import compose
    from serving.settings import AppArgs

    options = {"ray_actor_options": {"num_cpus": 0.1, "runtime_env": {"env_vars": {TOKEN_ENV: TOKEN}}}}
    app = compose(AppArgs(config_path=str(served.config_path)), options, topology="colocated")
    serve.run(app, name="colocated", route_prefix="/colocated")
    chain = replace(served, url=f"{served.url}/colocated")
    handle = serve.get_deployment_handle("ColocatedRecommender", "colocated")
    try:
        ready = httpx.get(f"{chain.url}/readyz", headers=AUTH, timeout=60)
        assert ready.status_code == 200 and ready.json()["ready"] is True, ready.text
        assert httpx.get(f"{chain.url}/readyz", timeout=60).status_code == 401  # the same guard
        for user, item, cluster in known_pairs(chain, 3):
            response = post(chain, {"user_id": user, "context_item_id": item, "k": 4})
            assert response.status_code == 200, response.text
            body = response.json()
            assert set(body) == set(RecommendResponse.model_fields)
            assert body["source"] == "serendipity" and body["degraded"] is False
            assert body["items"] and all(i["cluster_id"] == cluster for i in body["items"])
        too_many = post(chain, {"user_id": 1, "context_item_id": 1, "k": chain.config.serving.max_k + 1})
        assert too_many.status_code == 422

        user, item, _ = known_pairs(chain, 1)[0]

        async def swap_under_traffic() -> list[int]:
            async with httpx.AsyncClient(base_url=chain.url, headers=AUTH, timeout=60) as client:
                stop = asyncio.Event()

                async def traffic() -> list[int]:
                    codes = []
                    while not stop.is_set():
                        body = {"user_id": user, "context_item_id": item, "k": 3}
                        codes.append((await client.post("/recommend", json=body)).status_code)
                    return codes

                workers = [asyncio.create_task(traffic()) for _ in range(4)]
                await asyncio.to_thread(
                    lambda: handle.reconfigure.remote({"retriever_version": "v2"}).result()
                )
                stop.set()
                return [code for codes in await asyncio.gather(*workers) for code in codes]

        codes = asyncio.run(swap_under_traffic())
        assert codes and set(codes) == {200}
        assert httpx.get(f"{chain.url}/readyz", headers=AUTH).json()["retriever_version"] == "v2"
    finally:
        serve.delete("colocated")

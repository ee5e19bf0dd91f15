"""``serving.serve_haproxy``: `serendipity serve start` on Ray's HAProxy (direct ingress to the replicas'
own HTTP ports) in place of Serve's Python proxy, over the real serving chain, with the colocated
topology (the fastest arrangement in bench/results/serve_load_haproxy_colocated.json)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from devtools.services import free_port
from serendipity.config import load_config
from serving.demo_queries import demo_requests
from serving.local import read_endpoint, serve_haproxy_dir
from serving.models import RecommendResponse

pytestmark = pytest.mark.slow

REPLICA_PORTS = range(30000, 31001)  # Ray 2.60's direct-ingress HTTP ports


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "serendipity.app.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, env={**os.environ})


def _listeners(root: psutil.Process) -> dict[str, list[tuple[str, int]]]:
    """(host, port) of every listening TCP socket of the processes of Ray's session, by process name."""
    found: dict[str, list[tuple[str, int]]] = {}
    for process in psutil.process_iter(["name"]):
        try:
            if process.pid != root.pid and not process.name().startswith(("ray::", "haproxy")):
                continue
            sockets = process.net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for connection in sockets:
            if connection.status == psutil.CONN_LISTEN:
                found.setdefault(process.name(), []).append((connection.laddr.ip, connection.laddr.port))
    return found


def test_serve_start_on_serves_haproxy_answers_through_loopback_replica_ports(
    retrieval_chain: Path, tmp_path: Path
) -> None:
    data = yaml.safe_load(retrieval_chain.read_text())
    serve_haproxy = {
        "enabled": True,
        "stats_port": free_port(),
        "metrics_port": free_port(),
        "fallback_port": free_port(),
    }
    data["serving"] = {
        **data.get("serving", {}),
        "port": free_port(),
        "admission": {"upstream_port": free_port()},
        "topology": "colocated",
        "serve_haproxy": serve_haproxy,
    }
    config_path = tmp_path / "serve.yaml"
    config_path.write_text(yaml.safe_dump(data))
    config = load_config(config_path)
    try:
        started = _cli("serve", "start", "--config", str(config_path))
        assert started.returncode == 0, started.stdout + started.stderr
        endpoint = read_endpoint(config)
        assert endpoint is not None
        listeners = _listeners(psutil.Process(endpoint.pid))
        replica_ports = [
            (host, port)
            for name, bound in listeners.items()
            if name.startswith("ray::ServeReplica")
            for host, port in bound
            if port in REPLICA_PORTS
        ]
        assert replica_ports, listeners  # the replica answers HTTP itself: direct ingress is on
        assert {host for host, _ in replica_ports} == {"127.0.0.1"}, replica_ports  # never beyond loopback
        serve_port = ("127.0.0.1", config.serving.serve_port)
        haproxies = [name for name, bound in listeners.items() if serve_port in bound]
        assert haproxies and all(name.startswith("haproxy") for name in haproxies), listeners
        assert any(serve_haproxy_dir(config).rglob("haproxy.cfg"))  # its files where the config says

        sources = []
        for request in demo_requests(config, 3, 4):
            answer = httpx.post(f"{endpoint.url}/recommend", json=request, timeout=30)
            assert answer.status_code == 200, answer.text
            body = RecommendResponse.model_validate(answer.json())
            assert not body.degraded and len(body.items) == 4
            sources.append(body.source)
        assert "serendipity" in sources, sources
    finally:
        stopped = _cli("serve", "stop", "--config", str(config_path))
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    for port in (config.serving.port, config.serving.serve_port):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0  # Serve's HAProxy went with the app
    state = str(serve_haproxy_dir(config))
    assert not [p.pid for p in psutil.process_iter(["cmdline"]) if state in " ".join(p.info["cmdline"] or ())]

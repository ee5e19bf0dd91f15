"""The demo's endpoint: `serendipity serve start|query|stop` on the real serving chain, over real HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from devtools.services import free_port
from serendipity.config import load_config
from serving.demo_queries import demo_requests
from serving.local import endpoint_file, read_endpoint

pytestmark = pytest.mark.slow


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "serendipity.app.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, env={**os.environ})


def _config_on_free_ports(retrieval_chain: Path, tmp_path: Path) -> Path:
    data = yaml.safe_load(retrieval_chain.read_text())
    front = {"upstream_port": free_port()}  # Serve's proxy, on loopback behind the admission front
    data["serving"] = {**data.get("serving", {}), "port": free_port(), "admission": front}
    config_path = tmp_path / "serve.yaml"
    config_path.write_text(yaml.safe_dump(data))
    return config_path


def test_start_query_stop(retrieval_chain: Path, tmp_path: Path) -> None:
    config_path = _config_on_free_ports(retrieval_chain, tmp_path)
    config = load_config(config_path)
    try:
        started = _cli("serve", "start", "--config", str(config_path))
        assert started.returncode == 0, started.stdout + started.stderr
        endpoint = read_endpoint(config)
        assert endpoint is not None and f":{config.serving.port}" in endpoint.url
        assert endpoint.url in started.stdout and "serve stop" in started.stdout

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
            assert probe.connect_ex(("127.0.0.1", port)) != 0


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

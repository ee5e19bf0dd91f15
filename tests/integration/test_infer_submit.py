"""The inference job submitted as users do it: a real `ray start --head`, then `ray job submit`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import closing, suppress
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from test_infer import corpus_ids, isolated_work, read_errors, read_output, tuned  # noqa: F401

from serendipity.layout import WorkLayout
from serendipity.schema import SERENDIPITY_SCHEMA

pytestmark = pytest.mark.slow

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


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _dashboard_up(url: str) -> bool:
    """Any HTTP answer counts: with token authentication on, an unauthenticated probe gets a 401."""
    try:
        with urllib.request.urlopen(f"{url}/api/version", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


@pytest.fixture
def ray_head(repo_root: Path) -> Iterator[str]:
    """A private Ray head on loopback; yields the dashboard (job API) address.

    Its own temp dir keeps its address file away from other Ray users on the machine; it is ended by
    its process group, never by `ray stop`, which would stop every Ray on the machine.
    """
    ports = {name: free_port() for name in HEAD_PORTS}
    temp_dir = tempfile.mkdtemp(prefix="rayh-", dir="/tmp")
    command = [
        str(repo_root / ".venv" / "bin" / "ray"),
        "start",
        "--head",
        "--block",
        "--num-cpus=2",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--temp-dir={temp_dir}",
        *(f"--{name}={port}" for name, port in ports.items()),
    ]
    # As from an activated virtualenv: the job's `python` is the project's interpreter.
    path = f"{repo_root / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, **JOB_ENV, **CLIENT_ENV, "PATH": path}
    head = subprocess.Popen(command, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{ports['dashboard-port']}"
    try:
        deadline = time.monotonic() + 180
        while not _dashboard_up(url):
            assert head.poll() is None, f"`ray start --head` exited with {head.returncode}"
            assert time.monotonic() < deadline, "the Ray dashboard did not come up within 180 s"
            time.sleep(1)
        yield url
    finally:
        with suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            head.wait(timeout=30)
        with suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_ray_job_submit_runs_inference_on_a_running_cluster(tuned, ray_head, tmp_path, repo_root) -> None:  # noqa: F811
    config = isolated_work(tuned, tmp_path / "work")
    config_path = tmp_path / "infer.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    runtime_env = {"env_vars": JOB_ENV, "excludes": [".venv/", "data/", ".git/"]}
    submit = [
        str(repo_root / ".venv" / "bin" / "ray"),
        "job",
        "submit",
        "--address",
        ray_head,
        "--working-dir",
        str(repo_root),
        "--runtime-env-json",
        json.dumps(runtime_env),
        "--",
        "python",
        "-m",
        "ray_jobs.infer",
        "--config",
        str(config_path),
    ]
    env = {**os.environ, **CLIENT_ENV}
    result = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "succeeded" in (result.stdout + result.stderr).lower()

    layout = WorkLayout.of(config)
    assert pq.read_schema(layout.serendipity_path).remove_metadata() == SERENDIPITY_SCHEMA
    output = read_output(config)
    assert output["item_id"].is_unique
    assert set(output["item_id"]) | set(read_errors(config)["item_id"]) == corpus_ids(tuned)
    stats = json.loads(layout.job_stats_path("infer").read_text())
    assert stats["inferred"] == len(corpus_ids(tuned)) and stats["output_rows"] == len(output)

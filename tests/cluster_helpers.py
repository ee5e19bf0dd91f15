"""Processes a cluster user starts, run privately for tests: a Spark standalone cluster, a Ray cluster (a
head and a worker node), `ray job submit`, the Ray state API, a redis-server.

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
# the ports a second raylet on the same machine must not share with the head's (Ray's fixed defaults)
WORKER_NODE_PORTS = (
    "node-manager-port",
    "object-manager-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "runtime-env-agent-port",
    "metrics-export-port",
)
# Ray enables token authentication on new clusters (token in ~/.ray/auth_token); the job CLI only
# sends the token in token mode. No RAY_ADDRESS: the head and the client must not find another cluster.
CLIENT_ENV = {"RAY_AUTH_MODE": "token", "RAY_ADDRESS": ""}
JOB_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
}
# .mypy_cache/: a local checkout's type-check cache (not gitignored), some 150 MB per upload
JOB_EXCLUDES = [".venv/", "data/", ".git/", ".mypy_cache/"]
# A node told to stop (SIGTERM) first drains, up to 30 s, until no worker of it holds a lease (Serve
# moving its replicas away): a test cluster ends as a whole, carrying no traffic, so its nodes stop at once.
NO_DRAIN_ENV = {"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}


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
def ray_head(
    num_cpus: int = 2,
    extra_env: Mapping[str, str] | None = None,
    resources: Mapping[str, float] | None = None,
) -> Iterator[RayHead]:
    """A private `ray start --head` on loopback, with its own temp dir (so its address file stays away
    from other Ray users on the machine); ``extra_env`` reaches every worker, job and Serve replica,
    ``resources`` are the node's custom resources (``--resources``)."""
    ports = {name: free_port() for name in HEAD_PORTS}
    temp_dir = tempfile.mkdtemp(prefix="rayh-", dir="/tmp")
    command = [
        str(VENV_BIN / "ray"),
        "start",
        "--head",
        "--block",
        f"--num-cpus={num_cpus}",
        f"--resources={json.dumps(dict(resources or {}))}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--temp-dir={temp_dir}",
        *(f"--{name}={port}" for name, port in ports.items()),
    ]
    env = {**os.environ, **JOB_ENV, **CLIENT_ENV, **NO_DRAIN_ENV, "PATH": venv_path(), **(extra_env or {})}
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


@contextmanager
def ray_worker_node(
    head: RayHead, num_cpus: int = 1, resources: Mapping[str, float] | None = None
) -> Iterator[str]:
    """A second raylet joining ``head`` (`ray start --address`), on this machine with its own temp dir and
    ports, in its own process group; yields its node id once the cluster lists it alive (a node that is
    not the head: right after start-up the state API may not list the head yet either)."""
    before = {node["node_id"] for node in worker_nodes(head)}
    temp_dir = tempfile.mkdtemp(prefix="rayw-", dir="/tmp")
    command = [
        str(VENV_BIN / "ray"),
        "start",
        f"--address={head.gcs_address}",
        "--block",
        f"--num-cpus={num_cpus}",
        f"--resources={json.dumps(dict(resources or {}))}",
        f"--temp-dir={temp_dir}",
        *(f"--{name}={free_port()}" for name in WORKER_NODE_PORTS),
    ]
    worker = subprocess.Popen(command, env=dict(head.env), start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            joined = {node["node_id"] for node in worker_nodes(head)} - before
            if joined:
                break
            assert worker.poll() is None, f"`ray start --address` exited with {worker.returncode}"
            assert time.monotonic() < deadline, "the Ray worker node did not join within 120 s"
            time.sleep(1)
        yield joined.pop()
    finally:
        stop_process_group(worker)
        shutil.rmtree(temp_dir, ignore_errors=True)


def worker_nodes(head: RayHead) -> list[dict]:
    """The alive nodes of ``head``'s cluster other than the head."""
    return [node for node in ray_state(head, "nodes", "state=ALIVE") if not node["is_head_node"]]


def ray_state(head: RayHead, resource: str, *filters: str) -> list[dict]:
    """`ray list RESOURCE --detail` of ``head``'s cluster (the state API), e.g. ``ray_state(head,
    "actors", "state=DEAD")``: dead actors stay listed, so a finished job's actors can be looked up."""
    command = [str(VENV_BIN / "ray"), "list", resource, "--address", head.dashboard_url, "--detail"]
    command += ["--format", "json", "--limit", "10000", *(f"--filter={f}" for f in filters)]
    result = subprocess.run(command, env=dict(head.env), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"ray list {resource} failed:\n{job_output(result)}"
    if result.stdout.startswith("No resource"):  # what it prints for an empty list, JSON asked or not
        return []
    return json.loads(result.stdout)


def ray_job_submit(
    head: RayHead, entrypoint: Sequence[str], timeout_s: float = 900, submission_id: str | None = None
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
        *(["--submission-id", submission_id] if submission_id else []),
        "--",
        *entrypoint,
    ]
    return subprocess.run(command, env=dict(head.env), capture_output=True, text=True, timeout=timeout_s)


def actors_of_submissions(head: RayHead, submission_ids: Mapping[str, str]) -> dict[str, list[dict]]:
    """The actors each submitted job created, by the key of its submission id in ``submission_ids``: the
    state API's jobs name each submission's Ray job id, its actors (dead ones too) carry that id."""
    job_ids = {job["submission_id"]: job["job_id"] for job in ray_state(head, "jobs")}
    missing = set(submission_ids.values()) - job_ids.keys()
    assert not missing, f"the cluster lists no job for the submissions {sorted(missing)}"
    actors = ray_state(head, "actors")
    return {
        key: [actor for actor in actors if actor["job_id"] == job_ids[submission]]
        for key, submission in submission_ids.items()
    }


def job_output(result: subprocess.CompletedProcess[str]) -> str:
    """The tail of a finished command's output, for assertion messages."""
    return result.stdout[-4000:] + result.stderr[-4000:]


@dataclass(frozen=True)
class SparkCluster:
    master_url: str  # spark://127.0.0.1:PORT, for spark-submit --master and spark.master
    ui_url: str  # the master's web UI; /json/ lists its workers
    env: Mapping[str, str]  # SPARK_HOME and the executors' Python; spark-submit and Feast use it too


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def _alive_spark_workers(ui_url: str) -> int:
    try:
        with urllib.request.urlopen(f"{ui_url}/json/", timeout=5) as answer:
            state = json.load(answer)
    except OSError:
        return -1
    return sum(worker.get("state") == "ALIVE" for worker in state.get("workers", []))


@contextmanager
def spark_standalone(directory: Path, workers: int = 2, worker_memory: str = "1g") -> Iterator[SparkCluster]:
    """A Spark standalone cluster: a master and ``workers`` workers of one core each, started with
    pyspark's own ``bin/spark-class`` (the pip package ships no ``sbin/start-master.sh``), on free loopback
    ports, logs and work dirs under ``directory``, each in its own process group, ended in the end."""
    home = spark_home()
    logs = directory / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {
        **spark_submit_env(),
        "SPARK_HOME": str(home),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(logs),
        "SPARK_PID_DIR": str(directory),
        "SPARK_WORKER_DIR": str(directory / "work"),
    }
    spark_class = str(home / "bin" / "spark-class")
    port, ui_port = free_port(), free_port()
    master_url, ui_url = f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}"
    commands = [
        [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1"]
        + ["--port", str(port), "--webui-port", str(ui_port)]
    ]
    for index in range(workers):
        commands.append(
            [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1"]
            + ["--port", str(free_port()), "--webui-port", str(free_port()), "--cores", "1"]
            + ["--memory", worker_memory, "--work-dir", str(directory / f"work-{index}"), master_url]
        )
    started: list[subprocess.Popen] = []
    try:
        for name, command in zip(["master", *(f"worker-{i}" for i in range(workers))], commands, strict=True):
            with (logs / f"{name}.log").open("w") as log:
                started.append(
                    subprocess.Popen(
                        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                    )
                )
        deadline = time.monotonic() + 120
        while _alive_spark_workers(ui_url) < workers:
            dead = [process.args[1] for process in started if process.poll() is not None]
            assert not dead, f"{dead} exited; logs in {logs}"
            assert time.monotonic() < deadline, f"{workers} Spark workers did not register in 120 s ({logs})"
            time.sleep(1)
        yield SparkCluster(master_url, ui_url, env)
    finally:
        for process in reversed(started):
            stop_process_group(process)


# executors of 512 MiB fit the one-machine standalone workers, a few shuffle partitions the tiny tables
ONE_MACHINE_EXECUTORS = {"spark.executor.memory": "512m", "spark.sql.shuffle.partitions": "4"}


def spark_feature_store_yaml(
    prod_yaml: Path,
    directory: Path,
    connection_string: str,
    master_url: str,
    executors: Mapping[str, str] = ONE_MACHINE_EXECUTORS,
) -> Path:
    """The prod feature_store.yaml as it is (Spark offline store, Feast's Spark materialisation engine,
    Redis online store) with a local registry, the given Redis, the Spark master at ``master_url`` and
    the ``executors`` settings."""
    prod = yaml.safe_load(prod_yaml.read_text())
    on_master = {"spark.master": master_url, **executors}
    test_yaml = {
        **prod,
        "registry": {"path": str(directory / "registry.db"), "cache_ttl_seconds": 0},
        "offline_store": {
            **prod["offline_store"],
            "spark_conf": prod["offline_store"]["spark_conf"] | on_master,
        },
        "batch_engine": {
            **prod["batch_engine"],
            "spark_conf": prod["batch_engine"]["spark_conf"] | on_master,
        },
        "online_store": {**prod["online_store"], "connection_string": connection_string},
    }
    path = directory / "feature_store.yaml"
    path.write_text(yaml.safe_dump(test_yaml))
    return path


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

"""The path a cluster user takes, on a multi-node cluster on one machine, on the mined test world:

a Spark standalone cluster (a master and two one-core workers) -> spark-submit (infra/spark/submit.sh)
of the user_history job to it -> a Ray cluster of a head and a worker node (`ray start`, one CPU and a
custom resource each) -> `ray job submit` of fine-tuning (two Ray Train workers, one per node), batch
inference (one predictor actor per node) and retriever training -> `feast apply` + materialise with
Feast's Spark engine on the standalone cluster into a real redis-server -> `serve run
serving/config.yaml` on that cluster -> POST /recommend over HTTP.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from cluster_helpers import (
    SPARK_SUBMIT,
    RayHead,
    SparkCluster,
    actors_of_submissions,
    job_output,
    ray_head,
    ray_job_submit,
    ray_state,
    ray_worker_node,
    redis_server,
    spark_feature_store_yaml,
    spark_standalone,
)

from devtools import REPO, VENV_BIN
from devtools.services import free_port, stop_process_group
from serendipity.config import PipelineConfig, load_config, save_config, with_overrides
from serendipity.inference.summary import InferenceSummary
from serendipity.layout import WorkLayout
from serendipity.schema import ITEMS_FILE, SERENDIPITY_SCHEMA, level_column
from serving.settings import CONFIG_ENV, TOKEN_ENV

pytestmark = pytest.mark.slow

SUBMIT_SCRIPT = REPO / "infra" / "spark" / "submit.sh"
PROD_FEATURE_STORE = REPO / "infra" / "feast" / "prod" / "feature_store.yaml"
SERVE_CONFIG = REPO / "serving" / "config.yaml"
TOKEN = "e2e-token-4b1d"
READY_TIMEOUT_S = 300
EXECUTOR_MEMORY = "512m"  # a Spark worker offers 1 GiB
OFFLINE_STORE_ENV = {"SERENDIPITY_OFFLINE_STORE": "spark"}  # features/ declares Spark sources
FINETUNE, INFER, TRAIN_RETRIEVER = "ray_jobs.finetune", "ray_jobs.infer", "ray_jobs.train_retriever"


@dataclass(frozen=True)
class Deployment:
    config: PipelineConfig
    url: str
    redis_connection: str
    nodes: dict[str, str]  # Ray node id -> "head" | "worker"
    job_actors: dict[str, list[dict]]  # job module -> the actors created while it ran (state API)
    submitted_apps: list[str]  # the applications the Spark master had run when spark-submit ended
    spark_apps: list[str]  # ... and at the end (Feast's materialisation added)


def private_config(mined: PipelineConfig, directory: Path, feature_store_yaml: Path) -> Path:
    """``mined``'s Spark outputs in a private work dir; the stages under test start from nothing."""
    work_dir = directory / "work"
    layout = WorkLayout.of(mined)
    produced_here = [
        layout.feast_dir,
        layout.models_dir,
        layout.finetune_dir,
        layout.retriever_dir,
        layout.retriever_train_dir,
        layout.serendipity_path,
        layout.inference_errors_path,
        layout.inference_manifest_path,
        layout.user_history_path,
        layout.item_meta_path,
    ]
    skipped = {path.name for path in produced_here}
    shutil.copytree(mined.work_dir, work_dir, ignore=lambda _, names: [n for n in names if n in skipped])
    overrides = {
        "work_dir": str(work_dir),
        "mllm.max_steps": 2,
        "mllm.eval_every": 2,
        "retrieval.epochs": 2,
        "features.feature_store_yaml": str(feature_store_yaml),
        # the two-step model is served (not a reference the gate may prefer), by one predictor actor per
        # node (each takes its node's one CPU), even for the tiny corpus
        "mllm.gate.rule": "always",
        "inference.num_actors": 2,
        "inference.in_process_below": 0,
    }
    return save_config(with_overrides(mined, overrides), directory / "production-config.yaml")


def run(command: list[str], env: dict[str, str], timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{job_output(result)}"
    return result


def start_spark_submit(spark: SparkCluster, config_path: Path, log_path: Path) -> subprocess.Popen:
    """infra/spark/submit.sh user_history to the standalone master, in the background (while the Ray
    cluster starts)."""
    env = {
        **spark.env,
        "SPARK_MASTER": spark.master_url,
        "SPARK_SUBMIT": str(SPARK_SUBMIT),
        "SPARK_SUBMIT_ARGS": f"--executor-memory {EXECUTOR_MEMORY}",
    }
    command = ["bash", str(SUBMIT_SCRIPT), "user_history", "--config", str(config_path)]
    with log_path.open("w") as log:
        return subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_for_spark_submit(process: subprocess.Popen, log_path: Path) -> None:
    returncode = process.wait(timeout=600)
    assert returncode == 0, (
        f"submit.sh user_history exited with {returncode}:\n{log_path.read_text()[-4000:]}"
    )


def submit_ray_job(head: RayHead, entrypoint: list[str]) -> str:
    """`ray job submit` of ``entrypoint``, waiting for it to succeed; its submission id."""
    submission_id = f"{entrypoint[2].replace('.', '-')}-{uuid.uuid4().hex[:8]}"
    with timed(f"ray job {entrypoint[2]}"):
        result = ray_job_submit(head, entrypoint, submission_id=submission_id)
    assert result.returncode == 0, f"{entrypoint[2]}:\n{job_output(result)}"
    assert "succeeded" in (result.stdout + result.stderr).lower(), entrypoint[2]
    return submission_id


def where_jobs_ran(
    head: RayHead, submitted_jobs: dict[str, str]
) -> tuple[dict[str, str], dict[str, list[dict]]]:
    """The cluster's alive nodes (Ray node id -> "head" | "worker") and the actors each job created."""
    nodes = {
        node["node_id"]: "head" if node["is_head_node"] else "worker"
        for node in ray_state(head, "nodes", "state=ALIVE")
    }
    return nodes, actors_of_submissions(head, submitted_jobs)


def spark_applications(spark: SparkCluster) -> list[str]:
    """The names of the applications the standalone master ran to completion (its web UI's JSON)."""
    with urllib.request.urlopen(f"{spark.ui_url}/json/", timeout=10) as answer:
        return [app["name"] for app in json.load(answer).get("completedapps", [])]


def feast_apply(head: RayHead, spark: SparkCluster, feature_store_yaml: Path) -> None:
    """`feast apply` of features/ with Spark sources (Feast reads each source's schema with Spark)."""
    env = {**head.env, **spark.env, **OFFLINE_STORE_ENV}
    with timed("feast apply"):
        run(
            [str(VENV_BIN / "feast"), "-c", str(REPO / "features"), "-f", str(feature_store_yaml), "apply"],
            env,
        )


def feast_materialize(head: RayHead, spark: SparkCluster, config_path: Path) -> None:
    """Materialisation by Feast's Spark engine on the standalone cluster (the yaml's batch_engine), its
    executors writing to Redis."""
    env = {**head.env, **spark.env, **OFFLINE_STORE_ENV}
    end = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    with timed("serendipity features materialize"):
        run(
            [
                str(VENV_BIN / "serendipity"),
                "features",
                "materialize",
                "--config",
                str(config_path),
                "--end",
                end,
            ],
            env,
        )


def serve_run(head: RayHead, directory: Path) -> str:
    """`serve run` of serving/config.yaml on ``head``'s cluster, moved to a free port, with one proxy: the
    nodes of this one-machine cluster share the loopback address, where a proxy per node could not each
    bind the port (on Kubernetes every pod has its own address)."""
    serve_config = yaml.safe_load(SERVE_CONFIG.read_text())
    port = free_port()
    serve_config["http_options"]["port"] = port
    serve_config["proxy_location"] = "HeadOnly"
    path = directory / "serve-config.yaml"
    path.write_text(yaml.safe_dump(serve_config, sort_keys=False))
    command = [str(VENV_BIN / "serve"), "run", "--non-blocking", "--address", head.gcs_address, str(path)]
    run(command, dict(head.env), timeout_s=READY_TIMEOUT_S)
    url = f"http://{serve_config['http_options']['host']}:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            if httpx.get(f"{url}/readyz", headers=auth(), timeout=10).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"the Serve app at {url} was not ready within {READY_TIMEOUT_S} s"
        time.sleep(2)


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


@contextmanager
def timed(step: str) -> Iterator[None]:
    """Prints how long ``step`` took (shown with ``pytest -s``; never asserted on)."""
    start = time.perf_counter()
    yield
    print(f"[production path] {step}: {time.perf_counter() - start:.1f} s")


@dataclass(frozen=True)
class SparkSide:
    spark: SparkCluster
    submitted_apps: list[str]  # the applications the master had run when spark-submit ended


def spark_side(
    stack: ExitStack, directory: Path, feature_store_yaml: Path, redis_connection: str, config_path: Path
) -> SparkSide:
    """The standalone cluster, the feature_store.yaml naming its master, then spark-submit of
    user_history, waited for; the cluster is ended by ``stack``."""
    with timed("Spark standalone: a master and two workers"):
        spark = stack.enter_context(spark_standalone(directory / "spark"))
    written = spark_feature_store_yaml(
        PROD_FEATURE_STORE, feature_store_yaml.parent, redis_connection, spark.master_url
    )
    assert written == feature_store_yaml
    log_path = directory / "spark-submit.log"
    with timed("spark-submit user_history"):
        submitted = start_spark_submit(spark, config_path, log_path)
        stack.callback(stop_process_group, submitted)
        wait_for_spark_submit(submitted, log_path)
    return SparkSide(spark, spark_applications(spark))


def close_together(*stacks: ExitStack) -> None:
    """Ends the clusters at the same time (each stack in its own thread), each in its own order."""
    with timed("teardown: the Ray and the Spark cluster"), ThreadPoolExecutor(len(stacks)) as pool:
        for closed in [pool.submit(stack.close) for stack in stacks]:
            closed.result()


@pytest.fixture(scope="module")
def deployed(mined: PipelineConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Independent steps overlap, as a user with two clusters would run them: the Spark side (its cluster,
    then spark-submit of user_history) runs while the Ray cluster starts and fine-tuning and inference
    run (none reads another's output; every job holds the work dir shared, as jobs side by side may);
    the retriever trains while Feast applies; the Serve app starts while Feast materialises (ready once
    the store holds the features, which its store monitor sees)."""
    directory = tmp_path_factory.mktemp("production")
    feast_dir = directory / "feast"
    feast_dir.mkdir()
    feature_store_yaml = feast_dir / "feature_store.yaml"  # written once the Spark master is up
    config_path = private_config(mined, directory, feature_store_yaml)
    config = load_config(config_path)
    layout = WorkLayout.of(config)
    spark_stack, ray_side = ExitStack(), ExitStack()
    with ExitStack() as running, ThreadPoolExecutor(max_workers=2) as background:
        running.callback(close_together, ray_side, spark_stack)
        redis_connection = running.enter_context(redis_server(directory))
        spark_starting = background.submit(
            spark_side, spark_stack, directory, feature_store_yaml, redis_connection, config_path
        )
        env = {CONFIG_ENV: str(config_path), TOKEN_ENV: TOKEN}
        with timed("ray start: a head and a worker node"):
            head = ray_side.enter_context(ray_head(num_cpus=1, extra_env=env, resources={"head": 1}))
            ray_side.enter_context(ray_worker_node(head, num_cpus=1, resources={"worker": 1}))

        job = ["--config", str(config_path)]
        spread = ["--num-workers", "2", "--placement", "STRICT_SPREAD"]
        submitted_jobs: dict[str, str] = {}
        with timed("ray job submit: finetune, infer"):
            submitted_jobs[FINETUNE] = submit_ray_job(
                head, ["python", "-m", FINETUNE, *job, "--max-steps", "2", *spread]
            )
            submitted_jobs[INFER] = submit_ray_job(head, ["python", "-m", INFER, *job])
        assert layout.serendipity_path.exists()
        retriever = background.submit(
            submit_ray_job, head, ["python", "-m", TRAIN_RETRIEVER, *job, "--epochs", "2"]
        )
        with timed("the Spark side's spark-submit, after the Ray jobs"):
            side = spark_starting.result()
        assert layout.user_history_path.exists() and layout.item_meta_path.exists()
        with timed("feast apply, ray job submit train_retriever meanwhile"):
            feast_apply(head, side.spark, feature_store_yaml)
            submitted_jobs[TRAIN_RETRIEVER] = retriever.result()
        assert layout.retriever_dir.is_dir()
        recorded = background.submit(where_jobs_ran, head, submitted_jobs)
        materialized = background.submit(feast_materialize, head, side.spark, config_path)
        with timed("serve run until ready, feast materialize (Spark engine) meanwhile"):
            url = serve_run(head, directory)
            materialized.result()
        nodes, job_actors = recorded.result()
        spark_apps = spark_applications(side.spark)
        yield Deployment(config, url, redis_connection, nodes, job_actors, side.submitted_apps, spark_apps)


def nodes_of(deployed: Deployment, job: str, class_name: str) -> list[str]:
    """Where ``job``'s actors whose class name contains ``class_name`` ran: "head" or "worker" each."""
    actors = [actor for actor in deployed.job_actors[job] if class_name in actor["class_name"]]
    return sorted(deployed.nodes[actor["node_id"]] for actor in actors)


def test_both_nodes_joined_the_ray_cluster(deployed: Deployment) -> None:
    assert sorted(deployed.nodes.values()) == ["head", "worker"]


def test_finetuning_ran_one_ray_train_worker_per_node(deployed: Deployment) -> None:
    assert nodes_of(deployed, FINETUNE, "RayTrainWorker") == ["head", "worker"]


def test_inference_ran_a_predictor_actor_on_each_node(deployed: Deployment) -> None:
    assert nodes_of(deployed, INFER, "PredictBatch") == ["head", "worker"]


def test_the_spark_jobs_ran_on_the_standalone_cluster(deployed: Deployment) -> None:
    """spark-submit's user_history job and Feast's materialisation are both the master's applications."""
    assert deployed.submitted_apps == [deployed.config.spark.app_name]
    assert len(deployed.spark_apps) > len(deployed.submitted_apps), deployed.spark_apps


def test_features_were_materialised_into_redis(deployed: Deployment) -> None:
    import redis

    host, port = deployed.redis_connection.split(":")
    with redis.Redis(host=host, port=int(port)) as client:
        assert client.dbsize() > 0


def test_the_api_requires_the_token(deployed: Deployment) -> None:
    assert httpx.get(f"{deployed.url}/healthz", timeout=30).json() == {"status": "alive"}
    body = {"user_id": 0, "context_item_id": 0, "k": 3}
    assert httpx.post(f"{deployed.url}/recommend", json=body, timeout=30).status_code == 401


def test_recommendations_lie_in_the_serendipitous_cluster(deployed: Deployment) -> None:
    layout = WorkLayout.of(deployed.config)
    features = pd.read_parquet(layout.serendipity_path).sort_values("item_id").head(3)
    histories = pd.read_parquet(layout.user_history_path)
    items = pd.read_parquet(layout.catalog_dir() / ITEMS_FILE)
    item_cluster = dict(zip(items["item_id"], items[level_column(deployed.config.mining.level)], strict=True))
    users = sorted(histories["user_id"].unique())[: len(features)]
    assert len(features) and users
    for user, item, cluster in zip(
        users, features["item_id"], features["serendipitous_cluster"], strict=False
    ):
        body = {"user_id": int(user), "context_item_id": int(item), "k": 5}
        response = httpx.post(f"{deployed.url}/recommend", json=body, headers=auth(), timeout=60)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["source"] == "serendipity" and answer["degraded"] is False, answer
        assert answer["cluster"]["id"] == int(cluster)
        assert answer["items"] and len(answer["items"]) <= 5
        assert {item_cluster[returned["item_id"]] for returned in answer["items"]} == {int(cluster)}


def test_the_submitted_inference_covers_the_corpus_once(deployed: Deployment) -> None:
    layout = WorkLayout.of(deployed.config)
    assert pq.read_schema(layout.serendipity_path).remove_metadata() == SERENDIPITY_SCHEMA
    output = pq.read_table(layout.serendipity_path).to_pandas()
    errors = pq.read_table(layout.inference_errors_path).to_pandas()
    corpus = set(pq.read_table(layout.corpus_path).column("item_id").to_pylist())
    assert output["item_id"].is_unique and output["model_version"].nunique() == 1
    assert set(output["item_id"]) | set(errors["item_id"]) == corpus
    stats = InferenceSummary.read(layout.job_stats_path("infer"))
    assert stats.tally.inferred == len(corpus) and stats.output_rows == len(output)

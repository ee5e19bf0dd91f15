"""Session-wide fixtures: one local Spark, one local Ray, one generated world per test session."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from serendipity.config import PipelineConfig, load_config, save_config, with_overrides
from spark_jobs import MINING_JOBS

if TYPE_CHECKING:
    from serendipity.mllm.results import FinetuneSummary

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"

os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# SERENDIPITY_TEST_SERVE_HAPROXY=1: the session's Serve app answers through Ray's HAProxy
# (serving.serve_haproxy, as configs/demo.yaml serves) instead of Serve's Python proxy, e.g. to run the fault
# tests on that path
SERVE_HAPROXY = os.environ.get("SERENDIPITY_TEST_SERVE_HAPROXY") == "1"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the session's Serve app (the ``served`` fixture) run last, in their collected order: once
    started, the app holds part of local Ray's 2 CPUs until the session ends, and the Ray Data and Ray
    Train runs of the other tests need them whole (else they wait for a CPU until their timeout)."""
    items.sort(key=lambda item: "served" in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip("../shared/datasets is absent")
    return SHARED_DATASETS


@pytest.fixture(scope="session")
def test_config(tmp_path_factory: pytest.TempPathFactory) -> PipelineConfig:
    """configs/test.yaml with dataset and work dirs moved under the session's temp dir."""
    base = tmp_path_factory.mktemp("pipeline")
    overrides = {"dataset_dir": str(base / "dataset"), "work_dir": str(base / "work")}
    if SERVE_HAPROXY:
        overrides["serving.serve_haproxy.enabled"] = True
    return load_config(REPO_ROOT / "configs" / "test.yaml", overrides=overrides)


@pytest.fixture(scope="session")
def test_config_path(test_config: PipelineConfig) -> Path:
    """test_config written back to YAML, for jobs that take ``--config PATH`` like users run them."""
    return save_config(test_config, test_config.work_dir.parent / "test-config.yaml")


@pytest.fixture(scope="session")
def world_dataset(test_config: PipelineConfig) -> Path:
    """The synthetic world of configs/test.yaml, generated once per session (with media)."""
    from serendipity.world import generate_world

    generate_world(test_config.dataset_dir, test_config.world)
    return test_config.dataset_dir


@pytest.fixture(scope="session")
def spark(test_config: PipelineConfig):
    from spark_jobs.common import get_spark

    session = get_spark(test_config.spark)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def ray_local(test_config: PipelineConfig):
    import tempfile

    import ray

    from serving.settings import serve_haproxy_env

    if SERVE_HAPROXY and not ray.is_initialized():
        os.environ.update(serve_haproxy_env(test_config.serving, Path(tempfile.mkdtemp(prefix="srd-"))))
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


MINING_STAGES = ("validate", *MINING_JOBS)


@pytest.fixture(scope="session")
def mined(test_config: PipelineConfig, world_dataset: Path, spark) -> PipelineConfig:
    """The Spark chain (validate .. corpus) run once on the test world, as the pipeline runs it."""
    from serendipity.app.pipeline import run_pipeline

    run_pipeline(test_config, stages=MINING_STAGES)
    return test_config


@pytest.fixture(scope="session")
def retrieval_chain(mined: PipelineConfig, spark, ray_local, tmp_path_factory) -> Path:
    """The serving chain on a private copy of ``mined``: user_history (Spark) -> tiny MLLM batch
    inference (Ray Data) -> retriever (Ray Train job) -> Feast apply + materialise. Returns its config."""
    import shutil
    from datetime import UTC, datetime, timedelta

    from features.definitions import apply_definitions
    from ray_jobs import infer, train_retriever
    from serendipity.feature_store import ServingFeatures
    from serendipity.layout import WorkLayout
    from serendipity.mllm.tiny import init_tiny_model
    from spark_jobs import user_history

    work_dir = tmp_path_factory.mktemp("chain") / "work"
    shutil.copytree(
        mined.work_dir, work_dir, ignore=shutil.ignore_patterns("feast", "retriever*", "inference", "models")
    )
    config = with_overrides(mined, {"work_dir": str(work_dir)})
    config_path = save_config(config, work_dir.parent / "chain-config.yaml")
    layout = WorkLayout.of(config)
    user_history.run(config)
    init_tiny_model(
        layout.models_dir,
        config.dataset_dir,
        architecture=config.mllm.architecture,
        image_size=config.mllm.image_size,
    )
    infer.run(config)
    train_retriever.run(config)
    features = ServingFeatures(config)
    apply_definitions(features)
    features.materialize_incremental(datetime.now(UTC) + timedelta(minutes=1))
    return config_path


EXPERIMENT_SETTINGS = {
    "seeds": [0, 1, 2],
    "days": 1,
    "users_per_arm": 4,
    "sessions_per_day": 2,
    "num_shards": 2,
    "cpus_per_shard": 0.5,
}


@pytest.fixture(scope="session")
def experiment_config(retrieval_chain: Path) -> Path:
    """The simulated live experiment (``ray_jobs/evaluate.py``) run once on the serving chain, small:
    3 seeds, 1 day, 4 users per arm, 2 Ray actors. Returns the config path it ran with."""
    from ray_jobs import evaluate

    settings = {f"eval.{key}": value for key, value in EXPERIMENT_SETTINGS.items()}
    config = with_overrides(load_config(retrieval_chain), settings)
    config_path = save_config(config, retrieval_chain.parent / "evaluate-config.yaml")
    evaluate.run(config)
    return config_path


@pytest.fixture(scope="session")
def served(retrieval_chain: Path):
    """One local Serve app over the serving chain, shared by the Serve tests."""
    from ray import serve
    from serve_helpers import served_chain

    with served_chain(retrieval_chain) as chain:
        yield chain
    serve.shutdown()


@dataclass(frozen=True)
class PublishedFinetune:
    # 4 steps on two Ray Train workers, evaluated every 2, published whatever its figures
    config: PipelineConfig
    summary: FinetuneSummary  # what the run returned
    # a work dir holding copies of what the run left published: models/, finetune/summary.json
    published: Path


@pytest.fixture(scope="session")
def published_finetune(mined: PipelineConfig, ray_local, tmp_path_factory) -> PublishedFinetune:
    """One fine-tuning run on the curated set in a work dir of its own, shared: test_finetune alone resumes
    it there; test_infer infers with the copy of the model it published (resuming publishes anew)."""
    import shutil

    from finetune_helpers import isolated_finetune_config

    from serendipity.config import GateConfig
    from serendipity.layout import WorkLayout
    from serendipity.mllm.finetune import run_finetune

    directory = tmp_path_factory.mktemp("published_finetune")
    # A quarter core each: the session's Serve app holds part of local Ray's 2 CPUs.
    config = isolated_finetune_config(
        mined, directory / "work", num_workers=2, cpus_per_worker=0.25, gate=GateConfig(rule="always")
    )
    summary = run_finetune(config)
    layout, published = WorkLayout.of(config), WorkLayout(directory / "published")
    shutil.copytree(layout.models_dir, published.models_dir, symlinks=True)
    published.finetune_summary_path.parent.mkdir(parents=True)
    shutil.copy2(layout.finetune_summary_path, published.finetune_summary_path)
    return PublishedFinetune(config, summary, published.work_dir)

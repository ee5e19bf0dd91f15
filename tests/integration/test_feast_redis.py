"""The production-like Feast setup: Redis online store (a real redis-server), compared with SQLite."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from test_feast import feast_dataset, inference_time, prepare_feature_sources

from serendipity.config import PipelineConfig
from serendipity.features_store import PROJECT_ROOT, ServingFeatures
from serendipity.layout import WorkLayout

PROD_YAML = PROJECT_ROOT / "infra" / "feast" / "prod" / "feature_store.yaml"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server on a free loopback port, without persistence."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install -y redis-server)")
    import redis

    port = _free_port()
    directory = tmp_path_factory.mktemp("redis")
    server = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        else:
            pytest.fail("redis-server did not answer within 10 s")
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def redis_feature_store_yaml(directory: Path, connection_string: str) -> Path:
    """The prod yaml with its Redis online store, but a local registry and file offline store (no cluster)."""
    prod = yaml.safe_load(PROD_YAML.read_text())
    test_yaml = {
        **prod,
        "registry": {"path": str(directory / "registry.db"), "cache_ttl_seconds": 0},
        "offline_store": {"type": "file"},
        "online_store": {**prod["online_store"], "connection_string": connection_string},
    }
    path = directory / "feature_store.yaml"
    path.write_text(yaml.safe_dump(test_yaml))
    return path


@pytest.fixture(scope="module")
def sources(spark, request, test_config, tmp_path_factory) -> PipelineConfig:
    dataset = feast_dataset(request, tmp_path_factory)
    return prepare_feature_sources(test_config, dataset, tmp_path_factory.mktemp("feast_redis") / "work")


def test_prod_yaml_validates_with_feast(monkeypatch: pytest.MonkeyPatch, test_config: PipelineConfig) -> None:
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
    from feast.repo_config import load_repo_config

    from features.definitions import build_definitions

    monkeypatch.setenv("SERENDIPITY_FEAST_REGISTRY", "s3://bucket/feast/registry.db")
    monkeypatch.setenv("SERENDIPITY_SPARK_MASTER", "k8s://https://cluster:6443")
    monkeypatch.setenv("REDIS_CONNECTION_STRING", "redis.internal:6379,ssl=true")
    config = load_repo_config(PROD_YAML.parent, PROD_YAML)
    assert config.offline_store.type == "spark"
    assert config.offline_store.spark_conf["spark.master"] == "k8s://https://cluster:6443"
    assert config.online_store.type == "redis"
    assert config.online_store.connection_string == "redis.internal:6379,ssl=true"
    assert config.registry.path == "s3://bucket/feast/registry.db"
    spark_views = build_definitions(test_config, config.offline_store.type).feature_views
    assert all(isinstance(view.batch_source, SparkSource) for view in spark_views)
    assert spark_views[0].batch_source.path == str(WorkLayout.of(test_config).serendipity_path)
    raw = yaml.safe_load(PROD_YAML.read_text())  # hosts and locations only as ${VAR} placeholders
    assert raw["online_store"]["connection_string"] == "${REDIS_CONNECTION_STRING}"
    assert raw["registry"]["path"] == "${SERENDIPITY_FEAST_REGISTRY}"
    assert raw["offline_store"]["spark_conf"]["spark.master"] == "${SERENDIPITY_SPARK_MASTER}"


def test_redis_matches_sqlite(sources: PipelineConfig, redis_url: str, tmp_path: Path) -> None:
    end = inference_time(sources) + timedelta(minutes=1)
    sqlite = ServingFeatures(sources)
    sqlite.apply()
    sqlite.materialize_incremental(end)
    on_redis = ServingFeatures(sources, redis_feature_store_yaml(tmp_path, redis_url))
    assert on_redis.store.config.online_store.type == "redis"
    on_redis.apply()
    on_redis.materialize_incremental(end)

    layout = WorkLayout.of(sources)
    items = pq.read_table(layout.catalog_dir() / "items.parquet", columns=["item_id"]).column(0).to_pylist()
    users = pq.read_table(layout.user_history_path, columns=["user_id"]).column(0).to_pylist()
    users = sorted(set(users))
    user_ids = [users[i % len(users)] for i in range(len(items))]
    now = end
    from_sqlite = sqlite.online_features(items, user_ids, now=now)
    from_redis = on_redis.online_features(items, user_ids, now=now)
    assert from_redis["serendipitous_cluster"].notna().sum() > 0
    assert from_redis["recent_item_ids"].notna().sum() > 0
    pd.testing.assert_frame_equal(from_redis, from_sqlite)

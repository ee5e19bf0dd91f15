"""The production-like Feast setup: Redis online store (a real redis-server), compared with SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from cluster_helpers import redis_feature_store_yaml, redis_server
from feast_helpers import copy_work, inference_time

from features.definitions import apply_definitions
from serendipity.config import PipelineConfig, load_config
from serendipity.feature_store import PROJECT_ROOT, ServingFeatures
from serendipity.layout import WorkLayout

PROD_YAML = PROJECT_ROOT / "infra" / "feast" / "prod" / "feature_store.yaml"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server on a free loopback port, without persistence."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="module")
def sources(retrieval_chain: Path, tmp_path_factory: pytest.TempPathFactory) -> PipelineConfig:
    """The serving chain's real sources (Spark jobs' tables, Ray Data inference output), privately."""
    return copy_work(load_config(retrieval_chain), tmp_path_factory.mktemp("feast_redis") / "work")


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
    apply_definitions(sqlite)
    sqlite.materialize_incremental(end)
    on_redis = ServingFeatures(sources, redis_feature_store_yaml(PROD_YAML, tmp_path, redis_url))
    assert on_redis.store.config.online_store.type == "redis"
    apply_definitions(on_redis)
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


def test_an_emptied_online_store_is_noticed_and_reloaded_in_full(
    sources: PipelineConfig, redis_url: str, tmp_path: Path
) -> None:
    import redis

    end = inference_time(sources) + timedelta(minutes=1)
    on_redis = ServingFeatures(sources, redis_feature_store_yaml(PROD_YAML, tmp_path, redis_url))
    apply_definitions(on_redis)
    on_redis.materialize_incremental(end)
    assert on_redis.holds_serving_features()
    assert on_redis.materialize_incremental(end) is False  # nothing lost: nothing to reload
    host, port = redis_url.split(":")
    redis.Redis(host=host, port=int(port)).flushall()  # as after a restart without persistence
    assert not on_redis.holds_serving_features()
    assert on_redis.materialize_incremental(end) is True  # the registry still says "loaded": reloaded anyway
    assert on_redis.holds_serving_features()
    items = pq.read_table(WorkLayout.of(sources).serendipity_path, columns=["item_id"]).column(0).to_pylist()
    online = on_redis.online_features(items, [0] * len(items), now=end)
    assert online["serendipitous_cluster"].notna().all()

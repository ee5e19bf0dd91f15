"""Feast's Spark materialisation engine (the prod yaml's ``batch_engine``) on local Spark into a real
redis-server: the same online features as the local engine into SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import yaml
from cluster_helpers import redis_server, spark_feature_store_yaml

from devtools.feast_sources import write_sources
from features.definitions import apply_definitions
from serendipity.config import PipelineConfig, with_overrides
from serendipity.feature_store import PROJECT_ROOT, ServingFeatures

PROD_YAML = PROJECT_ROOT / "infra" / "feast" / "prod" / "feature_store.yaml"
ITEMS, USERS = 300, 40


def test_prod_yaml_materialises_on_spark_executors() -> None:
    raw = yaml.safe_load(PROD_YAML.read_text())
    assert raw["batch_engine"]["type"] == "spark.engine"
    assert raw["batch_engine"]["spark_conf"]["spark.master"] == "${SERENDIPITY_SPARK_MASTER}"
    assert raw["offline_store"]["type"] == "spark"  # the Spark engine reads Spark sources


def test_spark_engine_into_redis_matches_local_engine(
    spark, test_config: PipelineConfig, tmp_path: Path
) -> None:
    config = with_overrides(
        test_config, {"dataset_dir": str(tmp_path / "dataset"), "work_dir": str(tmp_path / "work")}
    )
    stamp = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    write_sources(config, ITEMS, USERS, stamp)
    end = stamp + timedelta(minutes=1)
    local = ServingFeatures(config)
    apply_definitions(local)
    local.materialize_incremental(end)
    (tmp_path / "redis").mkdir()
    (tmp_path / "spark_feast").mkdir()
    with redis_server(tmp_path / "redis") as url:
        master = spark.sparkContext.master
        on_spark = ServingFeatures(
            config, spark_feature_store_yaml(PROD_YAML, tmp_path / "spark_feast", url, master, executors={})
        )
        assert on_spark.store.config.batch_engine.type == "spark.engine"
        assert on_spark.store.config.online_store.type == "redis"
        apply_definitions(on_spark)
        on_spark.materialize_incremental(end)
        items = list(range(ITEMS))
        users = [item % USERS for item in items]
        from_spark = on_spark.online_features(items, users, now=end)
        from_local = local.online_features(items, users, now=end)
    assert from_spark["serendipitous_cluster"].notna().all()
    assert from_spark["recent_item_ids"].notna().all()
    pd.testing.assert_frame_equal(from_spark, from_local)

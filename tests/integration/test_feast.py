"""The Feast repository on the embedded default (file offline store, SQLite online store)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feast_helpers import copy_work, inference_time
from typer.testing import CliRunner

from features.definitions import apply_definitions
from serendipity.config import PipelineConfig, load_config, save_config, with_overrides
from serendipity.feature_store import ServingFeatures, SourceSchemaError, repo_dir, state_location
from serendipity.layout import WorkLayout
from serendipity.schema import (
    INTERACTIONS_FILE,
    ITEMS_FILE,
    SERENDIPITY_SCHEMA,
    USER_HISTORY_VIEW,
)


def write_serendipity(
    config: PipelineConfig, frame: pd.DataFrame, schema: pa.Schema = SERENDIPITY_SCHEMA
) -> None:
    path = WorkLayout.of(config).serendipity_path
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), path)


@pytest.fixture(scope="module")
def sources(retrieval_chain: Path, tmp_path_factory: pytest.TempPathFactory) -> PipelineConfig:
    """The serving chain's real Feast sources (Spark user_history and item_meta, the Ray Data inference
    output) in a private work dir with its own registry and online store."""
    return copy_work(load_config(retrieval_chain), tmp_path_factory.mktemp("feast") / "work")


@pytest.fixture(scope="module")
def serving_features(sources: PipelineConfig) -> ServingFeatures:
    """Applied and materialised up to just after the inference run."""
    features = ServingFeatures(sources)
    apply_definitions(features)
    features.materialize_incremental(inference_time(sources) + timedelta(minutes=1))
    return features


def _serendipity(config: PipelineConfig) -> pd.DataFrame:
    return pq.read_table(WorkLayout.of(config).serendipity_path).to_pandas()


def test_online_read_through_the_service_for_every_item(serving_features: ServingFeatures) -> None:
    expected = _serendipity(serving_features.config).sort_values("item_id").reset_index(drop=True)
    history = pq.read_table(WorkLayout.of(serving_features.config).user_history_path).to_pandas()
    user_id = int(history.sort_values("event_timestamp")["user_id"].iloc[-1])
    now = inference_time(serving_features.config) + timedelta(days=1)
    online = serving_features.online_features(
        expected["item_id"].tolist(), [user_id] * len(expected), now=now
    )
    assert online["serendipitous_cluster"].tolist() == expected["serendipitous_cluster"].tolist()
    assert online["serendipitous_description"].tolist() == expected["serendipitous_description"].tolist()
    assert [list(v) for v in online["alternatives"]] == [list(v) for v in expected["alternatives"]]
    assert online["model_version"].tolist() == expected["model_version"].tolist()
    items = pq.read_table(WorkLayout.of(serving_features.config).catalog_dir() / ITEMS_FILE).to_pandas()
    assert online["c3"].tolist() == items.set_index("item_id").loc[expected["item_id"], "c3"].tolist()
    latest = history[history["user_id"] == user_id].sort_values("event_timestamp").iloc[-1]
    assert all(list(v) == list(latest["recent_item_ids"]) for v in online["recent_item_ids"])


def test_stale_serendipity_expires_after_its_ttl(serving_features: ServingFeatures) -> None:
    ttl = timedelta(days=serving_features.config.features.serendipity_ttl_days)
    inferred = inference_time(serving_features.config)
    item_id = int(_serendipity(serving_features.config)["item_id"].iloc[0])
    fresh = serving_features.online_features([item_id], [0], now=inferred + ttl - timedelta(hours=1))
    stale = serving_features.online_features([item_id], [0], now=inferred + ttl + timedelta(hours=1))
    assert fresh["serendipitous_cluster"].notna().all()
    assert stale["serendipitous_cluster"].isna().all() and stale["model_version"].isna().all()
    assert stale["c1"].notna().all()  # item_meta has its own, longer TTL
    entity_df = pd.DataFrame(
        {
            "item_id": [item_id] * 3,
            "user_id": [0] * 3,
            "event_timestamp": [inferred - timedelta(seconds=1), inferred + ttl / 2, inferred + ttl * 2],
        }
    )
    joined = serving_features.historical_features(entity_df)
    assert joined["serendipitous_cluster"].isna().tolist() == [True, False, True]


def test_historical_features_are_point_in_time_correct(serving_features: ServingFeatures) -> None:
    history = pq.read_table(WorkLayout.of(serving_features.config).user_history_path).to_pandas()
    counts = history.groupby("user_id").size()
    user_id = int(counts[counts >= 2].index[0])
    snapshots = history[history["user_id"] == user_id].sort_values("event_timestamp").reset_index(drop=True)
    logs = pq.read_table(WorkLayout.of(serving_features.config).validated_dir / INTERACTIONS_FILE).to_pandas()
    item_id = int(_serendipity(serving_features.config)["item_id"].iloc[0])
    cutoff = snapshots["event_timestamp"].iloc[1]
    times = [
        cutoff - timedelta(microseconds=1),
        cutoff,
        snapshots["event_timestamp"].iloc[0] - timedelta(seconds=1),
    ]
    entity_df = pd.DataFrame({"item_id": item_id, "user_id": user_id, "event_timestamp": times})
    joined = serving_features.historical_features(entity_df)
    assert list(joined["recent_item_ids"].iloc[0]) == list(snapshots["recent_item_ids"].iloc[0])
    assert list(joined["recent_item_ids"].iloc[1]) == list(snapshots["recent_item_ids"].iloc[1])
    assert not isinstance(joined["recent_item_ids"].iloc[2], list | tuple | np.ndarray)  # before any snapshot
    before_cutoff = logs[(logs["user_id"] == user_id) & (logs["ts"] < cutoff)]
    assert set(joined["recent_item_ids"].iloc[0]) <= set(before_cutoff["item_id"])  # no future leakage
    assert joined["serendipitous_cluster"].isna().all()  # inference ran after every logged event
    assert joined["c1"].notna().all()


def test_rematerialising_the_same_window_is_idempotent(serving_features: ServingFeatures) -> None:
    items = _serendipity(serving_features.config)["item_id"].tolist()
    now = inference_time(serving_features.config)
    before = serving_features.online_features(items, [0] * len(items), now=now)
    serving_features.materialize_incremental(now + timedelta(minutes=1))
    serving_features.materialize(now - timedelta(days=1), now + timedelta(minutes=1))
    after = serving_features.online_features(items, [0] * len(items), now=now)
    pd.testing.assert_frame_equal(before, after)


def test_incremental_update_changes_only_changed_items(sources: PipelineConfig, tmp_path: Path) -> None:
    config = copy_work(sources, tmp_path / "work")
    features = ServingFeatures(config)
    apply_definitions(features)
    first_run = inference_time(config)
    features.materialize_incremental(first_run + timedelta(minutes=1))
    table = _serendipity(config)
    changed = table["item_id"].iloc[:5].tolist()
    second_run = first_run + timedelta(days=1)
    update = table["item_id"].isin(changed)
    first_version = set(table["model_version"])
    table.loc[update, "model_version"] = "retrained-v2"
    table.loc[update, "serendipitous_cluster"] = -1
    table.loc[update, "event_timestamp"] = pd.Timestamp(second_run)
    write_serendipity(config, table)
    features.materialize_incremental(second_run + timedelta(minutes=1))
    online = features.online_features(table["item_id"].tolist(), [0] * len(table), now=second_run)
    is_changed = online["item_id"].isin(changed)
    assert set(online.loc[is_changed, "model_version"]) == {"retrained-v2"}
    assert set(online.loc[is_changed, "serendipitous_cluster"]) == {-1}
    assert set(online.loc[~is_changed, "model_version"]) == first_version
    assert (online.loc[~is_changed, "serendipitous_cluster"] >= 0).all()


@pytest.mark.parametrize(
    ("column", "bad_type", "message"),
    [
        ("score", pa.string(), "'score' has type string"),
        ("serendipitous_cluster", None, "'serendipitous_cluster' is missing"),
    ],
)
def test_source_schema_mismatch_names_the_column(
    sources: PipelineConfig, tmp_path: Path, column: str, bad_type: pa.DataType | None, message: str
) -> None:
    config = copy_work(sources, tmp_path / "work")
    table = _serendipity(config)
    fields = [field for field in SERENDIPITY_SCHEMA if field.name != column or bad_type is not None]
    schema = pa.schema([pa.field(f.name, bad_type) if f.name == column else f for f in fields])
    frame = (
        table.drop(columns=[column])
        if bad_type is None
        else table.assign(**{column: table[column].astype(str)})
    )
    write_serendipity(config, frame, schema)
    features = ServingFeatures(config)
    apply_definitions(features)
    with pytest.raises(SourceSchemaError, match=message) as error:
        features.materialize_incremental(inference_time(config))
    assert "serendipity.parquet" in str(error.value)


def test_cli_apply_and_materialize(sources: PipelineConfig, tmp_path: Path) -> None:
    from serendipity.app.cli import app

    config = copy_work(sources, tmp_path / "work")
    config_path = tmp_path / "work.yaml"
    end = (inference_time(config) + timedelta(minutes=1)).isoformat()
    runner = CliRunner()
    applied = runner.invoke(app, ["features", "apply", "--config", str(config_path)])
    assert applied.exit_code == 0, applied.output
    materialized = runner.invoke(app, ["features", "materialize", "--config", str(config_path), "--end", end])
    assert materialized.exit_code == 0, materialized.output
    item_id = int(_serendipity(config)["item_id"].iloc[0])
    online = ServingFeatures(config).online_features([item_id], [0], now=inference_time(config))
    assert online["serendipitous_cluster"].notna().all()


def _feast(repo: Path, config_path: Path, *args: str) -> subprocess.CompletedProcess:
    """The real ``feast`` CLI on ``repo`` with the pipeline config from the environment, as a user runs it."""
    feast = [str(Path(sys.executable).with_name("feast")), "-c", str(repo), *args]
    env = {**os.environ, "SERENDIPITY_CONFIG": str(config_path)}
    return subprocess.run(feast, env=env, capture_output=True, text=True, timeout=300)


def test_feast_cli_on_the_repository_agrees_with_the_library_or_refuses(
    sources: PipelineConfig, tmp_path: Path
) -> None:
    """`feast -c features` for a pipeline config (``$SERENDIPITY_CONFIG``) works on the registry and online
    store the library and the endpoint use for that config, or refuses, naming both and the way to them."""
    from feast import FeatureStore

    config = copy_work(sources, tmp_path / "work")
    repo = tmp_path / "features"
    shutil.copytree(repo_dir(config), repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    kept = state_location(config)

    # the embedded feature_store.yaml read from the repository keeps state under it: refused, nothing written
    refused = _feast(repo, tmp_path / "work.yaml", "apply")
    assert refused.returncode != 0
    message = " ".join((refused.stdout + refused.stderr).split())
    assert "OtherFeastState" in message and kept.registry in message
    assert f"feast -c {WorkLayout.of(config).feast_dir}" in message
    assert not (repo / "data" / "registry.db").exists()

    # a feature_store.yaml holding the config's own state, named by the config and given to the CLI
    state_yaml = tmp_path / "feature_store.yaml"
    embedded = (repo / "feature_store.yaml").read_text()
    state_yaml.write_text(
        embedded.replace("data/registry.db", kept.registry).replace("data/online_store.db", kept.online_store)
    )
    agreeing = with_overrides(config, {"features.feature_store_yaml": str(state_yaml)})
    config_path = save_config(agreeing, tmp_path / "agreeing.yaml")
    assert state_location(agreeing) == kept
    end = datetime.now().astimezone().isoformat()
    for args in (["apply"], ["materialize-incremental", end]):
        done = _feast(repo, config_path, "-f", str(state_yaml), *args)
        assert done.returncode == 0, done.stdout + done.stderr
    cli_store = FeatureStore(repo_path=str(repo), fs_yaml_file=state_yaml)
    assert {view.name for view in cli_store.list_feature_views()} >= {USER_HISTORY_VIEW, "item_serendipity"}
    item_id = int(_serendipity(config)["item_id"].iloc[0])
    library = ServingFeatures(agreeing)  # what the endpoint opens for this config
    online = library.online_features([item_id], [0], now=inference_time(config))
    expected = _serendipity(config)
    assert (
        online["model_version"].tolist()
        == expected.loc[expected["item_id"] == item_id, "model_version"].tolist()
    )

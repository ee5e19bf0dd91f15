"""spark_jobs/user_history.py against an independent pandas reference, on the world's logs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from reference.contract_data import (
    job_pipeline_config,
    prepare_validated,
)

from serendipity.config import PipelineConfig
from serendipity.layout import WorkLayout
from serendipity.schema import (
    INTERACTIONS_FILE,
    ITEM_META_SCHEMA,
    ITEMS_FILE,
    LEVEL_COLUMNS,
    USER_HISTORY_SCHEMA,
)
from serendipity.stage_stats import UserHistoryStats, read_stage_stats
from spark_jobs import user_history


@pytest.fixture(scope="module")
def history_dataset(world_dataset: Path) -> Path:
    return world_dataset


@pytest.fixture(scope="module")
def history_config(spark, test_config, history_dataset: Path, tmp_path_factory) -> PipelineConfig:
    config = job_pipeline_config(test_config, history_dataset, tmp_path_factory.mktemp("history") / "work")
    prepare_validated(config)
    user_history.run(config)
    return config


def _read(path: Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()


def reference_history(logs: pd.DataFrame, engaged_above: float, length: int) -> pd.DataFrame:
    engaged = logs[logs["satisfaction"] > engaged_above].sort_values(["user_id", "ts", "item_id"])
    rows = []
    for user_id, events in engaged.groupby("user_id"):
        items, stamps = events["item_id"].tolist(), events["ts"].tolist()
        last_of_day = events.groupby(events["ts"].dt.date)["ts"].max()
        for stamp in last_of_day:
            position = max(i for i, ts in enumerate(stamps) if ts == stamp)
            recent = items[max(0, position + 1 - length) : position + 1][::-1]
            rows.append((user_id, recent, stamp))
    return pd.DataFrame(rows, columns=["user_id", "recent_item_ids", "event_timestamp"])


def reference_item_meta(items: pd.DataFrame, logs: pd.DataFrame) -> pd.DataFrame:
    shown = logs[logs["impression"].fillna(True).astype(bool)].sort_values("ts")
    rows = []
    for item in items.itertuples(index=False):
        path = [getattr(item, column) for column in LEVEL_COLUMNS]
        snapshots = {item.created_at: 0}
        events = shown[shown["item_id"] == item.item_id]
        for _, day_events in events.groupby(events["ts"].dt.date):
            stamp = day_events["ts"].max()
            snapshots[stamp] = max(snapshots.get(stamp, 0), int((events["ts"] <= stamp).sum()))
        rows.extend((item.item_id, *path, count, stamp) for stamp, count in snapshots.items())
    return pd.DataFrame(rows, columns=["item_id", *LEVEL_COLUMNS, "impressions", "event_timestamp"])


def _plain(arrow_type: pa.DataType) -> pa.DataType:
    """The type without list-item names or nullability, which Spark and pyarrow spell differently."""
    return pa.list_(arrow_type.value_type) if pa.types.is_list(arrow_type) else arrow_type


def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return frame.sort_values(keys).reset_index(drop=True)


def test_user_history_matches_reference(history_config: PipelineConfig) -> None:
    config = history_config
    layout = WorkLayout.of(config)
    logs = _read(layout.validated_dir / INTERACTIONS_FILE)
    actual = _read(layout.user_history_path)
    expected = reference_history(logs, config.engagement.satisfaction_above, config.features.history_length)
    assert len(actual) > 0
    keys = ["user_id", "event_timestamp"]
    actual, expected = _sorted(actual, keys), _sorted(expected, keys)
    assert actual[keys].equals(expected[keys].astype(actual[keys].dtypes.to_dict()))
    assert [list(v) for v in actual["recent_item_ids"]] == [list(v) for v in expected["recent_item_ids"]]
    assert actual["recent_item_ids"].map(len).max() <= config.features.history_length


def test_item_meta_matches_reference(history_config: PipelineConfig) -> None:
    layout = WorkLayout.of(history_config)
    items = _read(layout.catalog_dir() / ITEMS_FILE)
    logs = _read(layout.validated_dir / INTERACTIONS_FILE)
    keys = ["item_id", "event_timestamp"]
    actual = _sorted(_read(layout.item_meta_path), keys)
    expected = _sorted(reference_item_meta(items, logs), keys)
    pd.testing.assert_frame_equal(actual, expected.astype(actual.dtypes.to_dict()), check_exact=True)
    assert set(actual["item_id"]) == set(items["item_id"])


def test_outputs_follow_contract_and_rerun_is_idempotent(history_config: PipelineConfig) -> None:
    layout = WorkLayout.of(history_config)
    for path, schema in (
        (layout.user_history_path, USER_HISTORY_SCHEMA),
        (layout.item_meta_path, ITEM_META_SCHEMA),
    ):
        written = pq.read_schema(next(path.glob("*.parquet")))
        assert [(f.name, _plain(f.type)) for f in written] == [(f.name, _plain(f.type)) for f in schema], path
    before = (_read(layout.user_history_path), _read(layout.item_meta_path))
    user_history.run(history_config)
    after = (_read(layout.user_history_path), _read(layout.item_meta_path))
    for old, new in zip(before, after, strict=True):
        pd.testing.assert_frame_equal(old, new, check_exact=True)
    assert not [p for p in layout.work_dir.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]
    stats = read_stage_stats(layout, UserHistoryStats)
    assert stats.outputs.user_history_rows == len(after[0])
    assert stats.outputs.interactions_outside_catalog == 0


def test_missing_input_names_the_file(spark, test_config, tmp_path: Path) -> None:
    config = job_pipeline_config(test_config, tmp_path / "dataset", tmp_path / "work")
    with pytest.raises(FileNotFoundError, match="validated interactions.*interactions.parquet"):
        user_history.run(config)

"""The Spark validate job against the pandas validator on the same corrupted dataset: identical outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from reference.contract_data import job_pipeline_config

from serendipity.config import PipelineConfig
from serendipity.layout import WorkLayout
from serendipity.schema import (
    CLUSTERS_FILE,
    DATASET_FILES,
    INTERACTIONS_FILE,
    ITEMS_FILE,
    QUARANTINE_COLUMN,
    QUARANTINE_REASON,
    QUARANTINE_ROW,
    QUARANTINE_SOURCE,
    SCHEMAS,
)
from serendipity.stage_stats import ValidateStats, read_stage_stats
from serendipity.tree import ClusterTree
from serendipity.validation import validate_dataset, write_validation
from spark_jobs import validate

QUARANTINE_KEYS = [QUARANTINE_ROW, QUARANTINE_REASON, QUARANTINE_COLUMN, QUARANTINE_SOURCE]


def _read(ds: Path, file: str) -> pd.DataFrame:
    return pq.read_table(ds / file).to_pandas()


def _write(ds: Path, file: str, frame: pd.DataFrame) -> None:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), ds / file)


def corrupt_clusters(ds: Path) -> None:
    clusters = _read(ds, CLUSTERS_FILE)
    leaves = clusters.index[clusters["level"] == 4].tolist()
    clusters.loc[leaves[0], "level"] = 7
    clusters.loc[leaves[1], "parent_id"] = clusters.loc[leaves[2], "cluster_id"]
    clusters.loc[leaves[2], "parent_id"] = clusters.loc[leaves[1], "cluster_id"]
    clusters.loc[leaves[4], "description"] = clusters.loc[leaves[3], "description"]
    root = clusters.loc[clusters["level"] == 1, "cluster_id"].iloc[0]
    stray = {"cluster_id": 987_654_321, "level": 1, "parent_id": root, "description": "stray"}
    _write(ds, CLUSTERS_FILE, pd.concat([clusters, pd.DataFrame([stray])], ignore_index=True))


def corrupt_items(ds: Path) -> None:
    items, tree = _read(ds, ITEMS_FILE), ClusterTree.load(ds)
    items.loc[3, "item_id"] = items.loc[2, "item_id"]
    items.loc[0, "c3"] = tree.siblings(int(items.loc[0, "c3"]))[0]
    items.loc[1, "c4"] = 987_654_321
    items["created_at"] = items["created_at"].map(lambda ts: ts.isoformat())
    items.loc[4, "created_at"] = "not a date"
    items.loc[5, "created_at"] = None
    items.loc[6, "title"] = None
    items.loc[7, "title"] = ""
    items.loc[8, "thumbnail_path"] = "../../etc/passwd"
    items.loc[9, "video_path"] = "/etc/hostname"
    items.loc[10, "thumbnail_path"] = "media/not-there.png"
    if items.loc[11, "video_path"]:
        (ds / items.loc[11, "video_path"]).write_bytes(b"not a video")
    _write(ds, ITEMS_FILE, items)


def corrupt_interactions(ds: Path) -> None:
    logs = _read(ds, INTERACTIONS_FILE)
    logs["user_id"] = logs["user_id"].astype("float64")
    logs.loc[9, "user_id"] = 1.5
    logs.loc[[1, 2, 3], "satisfaction"] = [1.5, -0.1, 2.0]
    logs.loc[4, "satisfaction"] = np.nan
    logs.loc[6, ["user_id", "item_id", "ts"]] = logs.loc[5, ["user_id", "item_id", "ts"]]
    logs.loc[7, "item_id"] = 987_654_321
    logs["ts"] = ((logs["ts"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).astype("Int64")
    logs.loc[[3, 8], "ts"] = pd.NA
    _write(ds, INTERACTIONS_FILE, logs)


@pytest.fixture(scope="module")
def corrupted(world_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("spark_validate")
    dataset = Path(shutil.copytree(world_dataset, base / "dataset", symlinks=True))
    corrupt_items(dataset)
    corrupt_clusters(dataset)
    corrupt_interactions(dataset)
    return dataset


@pytest.fixture(scope="module")
def both_outputs(
    spark, test_config: PipelineConfig, corrupted: Path, tmp_path_factory
) -> tuple[Path, PipelineConfig]:
    pandas_out = write_validation(
        validate_dataset(corrupted), tmp_path_factory.mktemp("pandas") / "validated"
    )
    config = job_pipeline_config(test_config, corrupted, tmp_path_factory.mktemp("spark") / "work")
    validate.run(config)
    return pandas_out, config


def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def _spark_output(config: PipelineConfig) -> Path:
    return WorkLayout.of(config).validated_dir


def test_usable_rows_are_identical(both_outputs: tuple[Path, PipelineConfig]) -> None:
    pandas_out, config = both_outputs
    spark_out = _spark_output(config)
    for file in DATASET_FILES:
        expected = pq.read_table(pandas_out / file)
        actual = pq.read_table(spark_out / file).select(SCHEMAS[file].names).cast(SCHEMAS[file])
        keys = SCHEMAS[file].names
        pd.testing.assert_frame_equal(_sorted(actual.to_pandas(), keys), _sorted(expected.to_pandas(), keys))
        assert expected.num_rows > 0, file


def test_quarantine_reasons_are_identical_per_row(both_outputs: tuple[Path, PipelineConfig]) -> None:
    pandas_out, config = both_outputs
    spark_out = _spark_output(config)
    for file in (*DATASET_FILES, "media.parquet"):
        expected = pq.read_table(pandas_out / "quarantine" / file).to_pandas()
        actual = pq.read_table(spark_out / "quarantine" / file).to_pandas()
        assert len(expected) > 0, file
        columns = [c for c in expected.columns if c in QUARANTINE_KEYS or file == "media.parquet"]
        pd.testing.assert_frame_equal(
            _sorted(actual[columns], [QUARANTINE_ROW, QUARANTINE_COLUMN]),
            _sorted(expected[columns], [QUARANTINE_ROW, QUARANTINE_COLUMN]),
            check_dtype=False,
        )
    joined = pq.read_table(spark_out / "quarantine" / INTERACTIONS_FILE).to_pandas().set_index(QUARANTINE_ROW)
    assert joined.loc[3, QUARANTINE_REASON] == "ts is null; satisfaction outside [0, 1]"


def test_reports_and_stats_agree(both_outputs: tuple[Path, PipelineConfig]) -> None:
    pandas_out, config = both_outputs
    spark_out = _spark_output(config)
    expected = json.loads((pandas_out / "validation_report.json").read_text())
    actual = json.loads((spark_out / "validation_report.json").read_text())
    assert actual["files"] == expected["files"]
    assert actual["media_problems"] == expected["media_problems"] > 0

    def kinds(report: dict) -> set[tuple]:
        return {
            (p["file"], p["column"], p["reason"], p["count"], tuple(p["example_rows"]))
            for p in report["problems"]
        }

    assert kinds(actual) == kinds(expected)
    stats = read_stage_stats(WorkLayout.of(config), ValidateStats)
    assert stats.input_rows == {f: c["input_rows"] for f, c in expected["files"].items()}
    assert stats.output_rows == {f: c["usable_rows"] for f, c in expected["files"].items()}


def test_missing_column_fails_and_writes_only_the_report(
    spark, test_config: PipelineConfig, corrupted: Path, tmp_path: Path
) -> None:
    dataset = Path(shutil.copytree(corrupted, tmp_path / "dataset", symlinks=True))
    _write(dataset, ITEMS_FILE, _read(dataset, ITEMS_FILE).drop(columns=["c2"]))
    config = job_pipeline_config(test_config, dataset, tmp_path / "work")
    with pytest.raises(validate.DatasetInvalid, match=r"items.parquet: required column 'c2' \(int64\)"):
        validate.run(config)
    out = _spark_output(config)
    assert sorted(p.name for p in out.iterdir()) == ["validation_report.json"]

"""The Spark validate job on hostile inputs: the pandas validator's limits and outputs, and no crash."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from hostile_inputs import HOSTILE_MEDIA, LIMITS, TEXT_ROW, TITLE_ROW, build_hostile_dataset
from reference.contract_data import job_pipeline_config

from serendipity.config import PipelineConfig
from serendipity.layout import WorkLayout
from serendipity.schema import DATASET_FILES, ITEMS_FILE, QUARANTINE_COLUMN, QUARANTINE_REASON, QUARANTINE_ROW
from serendipity.validation import validate_dataset, write_validation
from spark_jobs import validate

KEYS = [QUARANTINE_ROW, QUARANTINE_COLUMN]


def _frame(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    frame = pq.read_table(path, columns=columns).to_pandas()
    keys = [k for k in KEYS if k in frame.columns] or list(frame.columns)
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def _kinds(report: dict) -> set[tuple]:
    fields = ("file", "column", "reason", "count")
    return {(*(p[f] for f in fields), tuple(p["example_rows"])) for p in report["problems"]}


@pytest.mark.parametrize("over_long_text", ["truncate", "quarantine"])
def test_spark_job_applies_the_same_limits(
    over_long_text: str, spark, test_config: PipelineConfig, world_dataset: Path, tmp_path: Path
) -> None:
    dataset = build_hostile_dataset(world_dataset, tmp_path / "dataset")
    limits = LIMITS.model_copy(update={"over_long_text": over_long_text})
    expected = write_validation(validate_dataset(dataset, limits), tmp_path / "pandas")
    config = job_pipeline_config(test_config, dataset, tmp_path / "work")
    config = config.model_copy(update={"limits": limits})
    validate.run(config)
    actual = WorkLayout.of(config).validated_dir

    for file in DATASET_FILES:
        pd.testing.assert_frame_equal(_frame(actual / file), _frame(expected / file), check_dtype=False)
        columns = [QUARANTINE_ROW, QUARANTINE_REASON, QUARANTINE_COLUMN]
        pd.testing.assert_frame_equal(
            _frame(actual / "quarantine" / file, columns), _frame(expected / "quarantine" / file, columns)
        )
    media = _frame(actual / "quarantine" / "media.parquet")
    pd.testing.assert_frame_equal(media, _frame(expected / "quarantine" / "media.parquet"), check_dtype=False)
    assert {(h.row, h.reason) for h in HOSTILE_MEDIA if not h.needs_probe_swap} == set(
        zip(media[QUARANTINE_ROW], media[QUARANTINE_REASON], strict=True)
    )
    report = json.loads((actual / "validation_report.json").read_text())
    assert _kinds(report) == _kinds(json.loads((expected / "validation_report.json").read_text()))
    named = {tuple(p["example_rows"]) for p in report["problems"] if p["file"] == ITEMS_FILE}
    assert {(TITLE_ROW,), (TEXT_ROW,)} <= named
    for counts in report["files"].values():
        assert counts["usable_rows"] + counts["quarantined_rows"] == counts["input_rows"]

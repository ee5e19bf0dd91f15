"""Typed stage stats (Spark stages, retriever metrics): the JSON written before the types, round trip."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from serendipity.config import config_from_dict
from serendipity.layout import WorkLayout
from serendipity.retrieval.holdout_figures import RetrieverMetrics
from serendipity.stage_stats import (
    STATS_BY_JOB,
    AggregatesOutputs,
    AggregatesStats,
    CurateStats,
    LogInputs,
    PriorStats,
    StageStats,
    ValidateStats,
    read_stage_stats,
    write_stage_stats,
)

# what each job wrote (the dicts of spark_jobs.common.write_job_stats and validation_dataset.job_stats)
WRITTEN: dict[str, dict[str, Any]] = {
    "validate": {
        "input_rows": {"clusters.parquet": 93, "interactions.parquet": 200000, "items.parquet": 3000},
        "output_rows": {"clusters.parquet": 93, "interactions.parquet": 199990, "items.parquet": 3000},
        "quarantined_rows": {"clusters.parquet": 0, "interactions.parquet": 10, "items.parquet": 0},
        "media_problems": 2,
        "fatal": False,
    },
    "build_tree": {
        "job": "build_tree",
        "inputs": {"items": 3000, "interactions": 200000},
        "outputs": {"items": 2990, "clusters": 93, "items_with_thumbnail": 2500},
    },
    "aggregates": {
        "job": "aggregates",
        "inputs": {"interactions": 200000, "items": 3000},
        "outputs": {"pairs": 173782, "overall_rows": 3, "per_cluster_rows": 27},
    },
    "pairs": {
        "job": "pairs",
        "inputs": {"interactions": 200000, "items": 3000},
        "outputs": {"serendipitous_pairs": 59411, "context_cluster_scores": 4152},
    },
    "prior": {
        "job": "prior",
        "inputs": {"serendipitous_pairs": 59411},
        "outputs": {
            "pairs_by_split": {"train": 40000, "calibration": 9411, "validation": 10000},
            "cluster_prior_rows": 812,
            "warm_items": 420,
            "shrinkage": 4.0,
            "snapshot": "3f2a9c",
            "train_end": "2024-01-21T00:00:00+00:00",
            "calibration_end": "2024-01-25T00:00:00+00:00",
        },
    },
    "curate": {
        "job": "curate",
        "inputs": {"serendipitous_pairs": 59411, "clusters": 93},
        "outputs": {
            "examples": 270,
            "examples_by_split": {"train": 209, "validation": 61},
            "target_clusters": 27,
            "descriptions": 93,
            "items_by_split": {"train": 150, "validation": 61},
        },
    },
    "corpus": {
        "job": "corpus",
        "inputs": {"interactions": 200000},
        "outputs": {"corpus_items": 614, "delta_items": 614, "achieved_coverage": 0.800045},
    },
    "user_history": {
        "job": "user_history",
        "inputs": {"interactions": 200000, "items": 3000},
        "outputs": {"user_history_rows": 16516, "item_meta_rows": 46101, "interactions_outside_catalog": 0},
    },
}
ROWS_IN = {
    "validate": 200000,
    "build_tree": 3000,
    "aggregates": 200000,
    "pairs": 200000,
    "prior": 59411,
    "curate": 59411,
    "corpus": 200000,
    "user_history": 200000,
}


@pytest.fixture
def layout(tmp_path: Path) -> WorkLayout:
    config = config_from_dict(
        {"name": "stats", "dataset_dir": str(tmp_path / "data"), "work_dir": str(tmp_path / "work")}, tmp_path
    )
    return WorkLayout.of(config)


def test_every_spark_stage_has_a_stats_type() -> None:
    from serendipity.app.stages import Engine, stages_on

    assert {stage.name for stage in stages_on(Engine.SPARK)} == set(STATS_BY_JOB) == set(WRITTEN)


@pytest.mark.parametrize("job", sorted(WRITTEN))
def test_stats_keep_their_keys_through_write_and_read(layout: WorkLayout, job: str) -> None:
    stats = STATS_BY_JOB[job].model_validate(WRITTEN[job])
    write_stage_stats(layout, stats)
    assert json.loads(layout.job_stats_path(job).read_text()) == WRITTEN[job]
    read = read_stage_stats(layout, job)
    assert type(read) is STATS_BY_JOB[job] and read == stats
    assert read.rows_in == ROWS_IN[job]
    expected_outputs = WRITTEN[job].get("outputs", WRITTEN[job].get("output_rows"))
    assert read.output_figures() == expected_outputs


def test_built_by_attributes_and_read_by_type(layout: WorkLayout) -> None:
    stats = write_stage_stats(
        layout,
        AggregatesStats(
            inputs=LogInputs(interactions=10, items=4),
            outputs=AggregatesOutputs(pairs=8, overall_rows=3, per_cluster_rows=6),
        ),
    )
    assert json.loads(layout.job_stats_path("aggregates").read_text()) == {
        "job": "aggregates",
        "inputs": {"interactions": 10, "items": 4},
        "outputs": {"pairs": 8, "overall_rows": 3, "per_cluster_rows": 6},
    }
    read = read_stage_stats(layout, AggregatesStats)
    assert read == stats and read.outputs.pairs == 8 and read.inputs.items == 4


def test_typed_figures(layout: WorkLayout) -> None:
    for job, data in WRITTEN.items():
        STATS_BY_JOB[job].model_validate(data).write(layout.job_stats_path(job))
    prior = read_stage_stats(layout, PriorStats)
    assert prior.outputs.pairs_by_split["calibration"] == 9411 and prior.outputs.shrinkage == 4.0
    validate = read_stage_stats(layout, ValidateStats)
    assert validate.quarantined_rows["interactions.parquet"] == 10 and validate.fatal is False
    assert isinstance(read_stage_stats(layout, "corpus"), StageStats)


def test_older_curate_stats_read(layout: WorkLayout) -> None:
    """Curate stats of older runs counted the context-cluster scores in, and had no items_by_split."""
    older: dict[str, Any] = {
        "job": "curate",
        "inputs": {"clusters": 93, "context_cluster_scores": 4152},
        "outputs": {
            "descriptions": 93,
            "examples": 270,
            "examples_by_split": {"train": 209, "validation": 61},
            "target_clusters": 27,
        },
    }
    layout.job_stats_path("curate").parent.mkdir(parents=True)
    layout.job_stats_path("curate").write_text(json.dumps(older))
    stats = read_stage_stats(layout, CurateStats)
    assert stats.rows_in == 4152 and stats.inputs.serendipitous_pairs is None
    assert stats.to_json() == older | {"outputs": older["outputs"] | {"items_by_split": {}}}


def test_unknown_keys_are_ignored_and_missing_figures_refused(layout: WorkLayout) -> None:
    data = {**WRITTEN["pairs"], "note": "by hand"}
    assert STATS_BY_JOB["pairs"].model_validate(data).to_json() == WRITTEN["pairs"]
    with pytest.raises(ValueError, match="serendipitous_pairs"):
        STATS_BY_JOB["pairs"].model_validate({**WRITTEN["pairs"], "outputs": {"context_cluster_scores": 1}})


def test_retriever_metrics_keep_their_keys(tmp_path: Path) -> None:
    """``retriever/metrics.json`` as train_retriever wrote it: the cut-off k in the ranking keys."""
    written = {
        "k": 10,
        "sasrec": {"hit_rate@10": 0.42, "ndcg@10": 0.21, "users": 120},
        "popularity": {"hit_rate@10": 0.2, "ndcg@10": 0.09, "users": 120},
        "beats_popularity": True,
        "data": {
            "items": 3000,
            "train_users": 800,
            "train_events": 40000,
            "holdout_users": 120,
            "cutoff": "2024-01-25T00:00:00+00:00",
        },
        "level": 3,
        "clusters": 27,
    }
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(written))
    metrics = RetrieverMetrics.read(path)
    assert metrics.sasrec.ndcg == 0.21 and metrics.popularity.hit_rate == 0.2 and metrics.data.items == 3000
    assert metrics.level == 3 and metrics.beats_popularity
    metrics.write(path)
    assert json.loads(path.read_text()) == written and list(json.loads(path.read_text())) == list(written)
    bare = replace(metrics, level=None, clusters=None)  # holdout_report's own figures
    assert bare.to_json() == {
        key: value for key, value in written.items() if key not in ("level", "clusters")
    }

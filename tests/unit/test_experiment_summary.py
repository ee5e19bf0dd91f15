"""experiment.json as a typed result: ``ExperimentSummary`` written and read back by writer and readers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from serendipity.eval import claims
from serendipity.eval.report_html import interval_text
from serendipity.eval.results import ExperimentSummary, RichnessBucket, Statistic
from serendipity.eval.summary import summarise
from serendipity.io import write_json_atomic

ARMS = ["exploitation", "exploration", "bandit", "mllm"]
SUMMARY_KEYS = {"mean", "ci_low", "ci_high", "per_seed"}  # as tests/integration/test_evaluate.py checks
DEMO_EXPERIMENT = Path(__file__).resolve().parents[2] / "data/demo/work/reports/experiment/experiment.json"


def _summary() -> ExperimentSummary:
    """A summary as ``serendipity.eval.summary.build_report`` builds it (one arm with one finite seed)."""
    metrics = {
        "novelty_gain_pct": {
            arm: summarise([10.0 * i, 10.0 * i + 2, 10.0 * i + 1]) for i, arm in enumerate(ARMS)
        },
        "positive_feedback_ratio": {arm: summarise([math.nan, 0.5, math.nan]) for arm in ARMS},
    }
    bucket = RichnessBucket(
        bucket=0,
        richness_low=0.0,
        richness_high=0.5,
        mllm_positive_ratio=summarise([0.4, 0.5]),
        other_positive_ratio=summarise([0.0, 0.0]),
        relative_gain_pct=summarise([math.nan, math.nan]),  # a gain over a zero reference: undefined
    )
    return ExperimentSummary(
        reference_arm="exploitation",
        arms=[*ARMS, "exploration_novel"],
        extra_arms=["exploration_novel"],
        seeds=[0, 1, 2],
        days=1,
        users_per_arm=10,
        slate_size=5,
        metrics=metrics,
        richness_buckets=[bucket],
        metric_help={name: f"definition of {name}" for name in metrics},
    )


def test_written_summary_reads_back_equal_with_the_schemas_keys(tmp_path: Path) -> None:
    summary = _summary()
    path = summary.write(tmp_path / "experiment.json")
    assert ExperimentSummary.read(path) == summary
    document = json.loads(path.read_text())
    assert set(document) == {
        "reference_arm", "arms", "extra_arms", "seeds", "days", "users_per_arm", "slate_size", "metrics",
        "richness_buckets", "metric_help",
    }  # fmt: skip
    for by_arm in document["metrics"].values():
        assert all(set(stats) == SUMMARY_KEYS for stats in by_arm.values())
    single = document["metrics"]["positive_feedback_ratio"]["mllm"]
    assert single == {"mean": 0.5, "ci_low": None, "ci_high": None, "per_seed": [None, 0.5, None]}
    bucket = document["richness_buckets"][0]
    assert bucket["relative_gain_pct"] == {
        "mean": None,
        "ci_low": None,
        "ci_high": None,
        "per_seed": [None, None],
    }
    assert set(bucket) == {
        "bucket", "richness_low", "richness_high", "mllm_positive_ratio", "other_positive_ratio",
        "relative_gain_pct",
    }  # fmt: skip


def test_readers_use_the_typed_values(tmp_path: Path) -> None:
    summary = ExperimentSummary.read(_summary().write(tmp_path / "experiment.json"))
    mllm = summary.stat("novelty_gain_pct", "mllm")
    assert isinstance(mllm, Statistic) and mllm.mean == pytest.approx(31.0)
    assert summary.stat("novelty_gain_pct", "nobody") is None and summary.stat("absent", "mllm") is None
    assert interval_text(summary.stat("positive_feedback_ratio", "mllm"), 2) == "0.50"
    assert interval_text(summary.richness_buckets[0].relative_gain_pct, 1) == "-"
    check = claims.mllm_highest_novelty(summary)
    assert "exploration_novel" not in check.evidence  # a diagnostic arm never decides the claim
    assert claims.gain_grows_with_richness(summary).status == claims.NOT_MEASURED  # one bucket


def test_partial_and_older_documents_are_read_and_kept_as_written(tmp_path: Path) -> None:
    """A hand-written document (no extra_arms, no per_seed, a key this version does not know)."""
    document = {
        "arms": ["exploitation", "mllm"],
        "metrics": {"novelty_gain_pct": {"mllm": {"mean": 5.0, "ci_low": 4.0, "ci_high": 6.0}}},
        "richness_buckets": [{"bucket": 1, "richness_low": 0.5, "richness_high": 1.0}],
        "from_a_later_version": {"x": 1},
    }
    path = write_json_atomic(document, tmp_path / "experiment.json")
    summary = ExperimentSummary.read(path)
    assert summary.extra_arms == [] and summary.reference_arm is None and summary.seeds is None
    assert summary.richness_buckets[0].relative_gain_pct is None
    assert summary.to_json() == document
    assert summary.write(tmp_path / "again.json").read_text() == path.read_text()
    assert ExperimentSummary.read(write_json_atomic({}, tmp_path / "empty.json")).to_json() == {}


def test_sorted_buckets_go_from_the_poorest_to_the_richest() -> None:
    summary = ExperimentSummary(
        richness_buckets=[
            RichnessBucket(bucket=b, richness_low=low) for b, low in ((1, 0.5), (0, 0.1), (2, 0.9))
        ]
    )
    assert [b.bucket for b in summary.sorted_buckets()] == [0, 1, 2]


def test_not_a_summary_is_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "experiment.json"
    path.write_text('{"metrics": {"m": {"arm": {"mean": "lots"}}}}')
    with pytest.raises(ValueError):
        ExperimentSummary.read(path)


@pytest.mark.skipif(not DEMO_EXPERIMENT.exists(), reason="no experiment.json of a real run (data/demo)")
def test_a_real_runs_experiment_json_reads_and_writes_back_byte_for_byte(tmp_path: Path) -> None:
    summary = ExperimentSummary.read(DEMO_EXPERIMENT)
    assert summary.arms[: len(ARMS)] == ARMS and summary.reference_arm == "exploitation"
    assert set(summary.metrics) == set(summary.metric_help)
    assert all(
        set(stats.model_fields_set) == SUMMARY_KEYS for m in summary.metrics.values() for stats in m.values()
    )
    assert summary.write(tmp_path / "experiment.json").read_bytes() == DEMO_EXPERIMENT.read_bytes()

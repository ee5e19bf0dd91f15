"""The offline replay's typed report: scored on a tiny tree, written as before, read back unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from serendipity.eval.replay import score_cases
from serendipity.eval.replay_results import HitRate, ReplayReport
from serendipity.intervals import wilson_interval
from serendipity.io import write_json_atomic
from serendipity.tree import Cluster, ClusterTree


def _methods(cases: int) -> dict[str, Any]:
    low, high = wilson_interval(1.0, cases)
    return {
        "mllm": {"hits": 1, "mean": 0.5, "ci_low": low, "ci_high": high},
        "random_sibling": {"hits": 0.5, "mean": 0.25, "ci_low": 0.0, "ci_high": 0.7},
    }


def old_document() -> dict[str, Any]:
    """A replay.json as the untyped replay wrote it: an undefined coverage and an empty subset are null."""
    empty = {"hits": 0, "mean": None, "ci_low": None, "ci_high": None}
    return {
        "protocol": "last engaged interaction per user held out",
        "level": 3,
        "engaged_satisfaction": 0.5,
        "users_held_out": 4,
        "excluded": {"users with fewer than two engaged interactions": 1},
        "mllm_coverage": None,
        "served_model_versions": ["mllm-20260101T000000-ab12cd34"],
        "training_overlap": {
            "retriever_cutoff": "2024-01-01T00:00:00+00:00",
            "held_out_before_retriever_cutoff": 1,
            "held_out_after_retriever_cutoff": 1,
            "note": "a note",
        },
        "subsets": {
            "all": {"cases": 2, "methods": _methods(2)},
            "serendipitous_next": {
                "cases": 0,
                "methods": {"mllm": empty, "random_sibling": {**empty, "hits": 0.0}},
            },
        },
        "method_help": {"mllm": "the MLLM's cluster"},
        "validation_period": {
            "protocol": "every serendipitous pair after the calibration cut",
            "prior_snapshot": "0123456789",
            "subsets": {"all": {"cases": 2, "methods": _methods(2)}},
        },
    }


def test_an_old_document_reads_and_writes_back_byte_identical(tmp_path: Path) -> None:
    document = old_document()
    old = write_json_atomic(document, tmp_path / "old.json")
    report = ReplayReport.read(old)
    assert report.subsets["all"].methods["mllm"].hits == 1
    assert isinstance(report.subsets["serendipitous_next"].methods["random_sibling"].hits, float)
    assert report.validation_period is not None and report.validation_period.prior_snapshot == "0123456789"
    new = report.write(tmp_path / "new.json")
    assert new.read_bytes() == old.read_bytes()
    assert ReplayReport.read(new) == report


def test_a_partial_or_newer_document_keeps_its_keys(tmp_path: Path) -> None:
    document = {"subsets": {"all": {"cases": 3, "methods": {"mllm": {"hits": 1}}}}, "added_later": [1]}
    path = write_json_atomic(document, tmp_path / "replay.json")
    report = ReplayReport.read(path)
    assert report.validation_period is None and report.served_model_versions == []
    assert report.subsets["all"].methods["mllm"].statistic().mean is None
    assert report.to_json() == document


def _tiny_tree() -> ClusterTree:
    return ClusterTree({c: Cluster(c, 1, None, f"cluster {c}") for c in (1, 2, 3)})


def test_score_cases_writes_the_old_keys_and_values() -> None:
    cases = pd.DataFrame(
        {
            "context_cluster": [1, 1],
            "next_cluster": [2, 1],
            "mllm": [2, 3],
            "exploitation_top1": [3, 3],
            "non_llm_frequent": [2, 1],
        }
    )
    scored = score_cases(cases, _tiny_tree())
    one, two, none = (wilson_interval(h, 2) for h in (1.0, 2.0, 0.0))
    # the random sibling hits the first case with 1/2 (siblings 2 and 3), never the second
    half = 1.96 * (0.5 * 0.5) ** 0.5 / 2
    assert scored.to_json() == {
        "cases": 2,
        "methods": {
            "mllm": {"hits": 1, "mean": 0.5, "ci_low": one[0], "ci_high": one[1]},
            "exploitation_top1": {"hits": 0, "mean": 0.0, "ci_low": none[0], "ci_high": none[1]},
            "non_llm_frequent": {"hits": 2, "mean": 1.0, "ci_low": two[0], "ci_high": two[1]},
            "random_sibling": {"hits": 0.5, "mean": 0.25, "ci_low": 0.0, "ci_high": 0.25 + half},
        },
    }
    empty = score_cases(cases.iloc[:0], _tiny_tree())
    assert empty.to_json()["methods"]["random_sibling"] == {
        "hits": 0.0,
        "mean": None,
        "ci_low": None,
        "ci_high": None,
    }
    assert json.dumps(empty.to_json()["methods"]["mllm"]) == (
        '{"hits": 0, "mean": null, "ci_low": null, "ci_high": null}'
    )


def test_hit_rate_is_a_statistic_for_the_claims() -> None:
    stat = HitRate(hits=3, mean=0.3, ci_low=0.1, ci_high=0.6).statistic()
    assert (stat.mean, stat.ci_low, stat.ci_high) == (0.3, 0.1, 0.6)

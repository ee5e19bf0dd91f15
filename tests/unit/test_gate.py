"""The publish gate's paired rule (the integration tests run it on real models)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from serendipity.config import GateConfig, load_config
from serendipity.intervals import exact_mcnemar, wilson_interval
from serendipity.mllm.gate import HOLD_BACK, PUBLISH, decide, recall_figures, served_choice


def _hits(count: int, total: int, offset: int = 0) -> np.ndarray:
    """``count`` hits among ``total`` items, starting at item ``offset`` (wrapping around)."""
    hits = np.zeros(total, dtype=bool)
    hits[[(offset + i) % total for i in range(count)]] = True
    return hits


def test_recall_figures_carry_the_wilson_interval() -> None:
    figures = recall_figures(_hits(20, 50))
    assert figures.recall == 0.4 and figures.hits == 20 and figures.items == 50
    assert figures.ci_low == pytest.approx(0.276, abs=1e-3)
    assert figures.ci_high == pytest.approx(0.538, abs=1e-3)
    assert math.isnan(recall_figures(np.array([], dtype=bool)).recall)


def test_the_small_sample_worse_candidate_of_movielens_is_held_back() -> None:
    """The last stop's MovieLens case: 18 of 43 (0.419) against the guess's 24 of 43 (0.558). The Wilson
    intervals overlap, which let the old rule publish it; the paired rule holds it back."""
    candidate, guess = _hits(18, 43), _hits(24, 43, offset=10)
    assert wilson_interval(18, 43)[1] > wilson_interval(24, 43)[0]  # the intervals overlap
    gate = decide(candidate, {"non_llm_guess": guess}, GateConfig())
    assert gate.decision == HOLD_BACK and gate.worse_than == ["non_llm_guess"]
    comparison = gate.comparisons["non_llm_guess"]
    assert comparison.n == 43 and comparison.difference == pytest.approx(18 / 43 - 24 / 43)
    assert comparison.difference_ci_low < comparison.difference < comparison.difference_ci_high
    assert comparison.p_value > 0.05  # not significant on 43 items: the point estimates decide
    assert gate.small_sample and gate.best_reference == "non_llm_guess"


def test_a_clearly_better_candidate_is_published() -> None:
    candidate, guess, prior = _hits(150, 200), _hits(90, 200), _hits(100, 200, offset=50)
    gate = decide(candidate, {"transition_prior": prior, "non_llm_guess": guess}, GateConfig())
    assert gate.decision == PUBLISH and gate.worse_than == [] and not gate.small_sample
    assert gate.comparisons["non_llm_guess"].p_value < 1e-6
    assert gate.comparisons["non_llm_guess"].difference_ci_low > 0
    assert gate.best_reference == "transition_prior"


def test_a_tie_publishes_and_the_margin_and_the_always_rule_apply() -> None:
    same = _hits(30, 60)
    assert decide(same, {"transition_prior": same.copy()}, GateConfig()).decision == PUBLISH
    worse, reference = _hits(28, 60), _hits(30, 60)
    assert decide(worse, {"p": reference}, GateConfig()).decision == HOLD_BACK
    assert decide(worse, {"p": reference}, GateConfig(margin=0.05)).decision == PUBLISH
    always = decide(worse, {"p": reference}, GateConfig(rule="always"))
    assert always.decision == PUBLISH and always.worse_than == ["p"]  # recorded, not enforced


def test_a_significantly_worse_candidate_is_held_back_even_within_the_margin() -> None:
    candidate, reference = _hits(400, 1000), _hits(460, 1000)
    gate = decide(candidate, {"p": reference}, GateConfig(margin=0.1))
    assert gate.comparisons["p"].p_value < 0.05 and gate.decision == HOLD_BACK


def test_exact_mcnemar_matches_the_binomial_test() -> None:
    assert exact_mcnemar(0, 0) == 1.0
    assert exact_mcnemar(5, 5) == pytest.approx(1.0)
    assert exact_mcnemar(0, 6) == pytest.approx(2 * 0.5**6)


def test_the_gate_is_configured_under_mllm(repo_root) -> None:
    config = load_config(repo_root / "configs" / "test.yaml", overrides={"mllm.gate.margin": 0.05})
    assert config.mllm.gate == GateConfig(rule="paired_not_worse", margin=0.05)


def test_inference_reads_the_served_choice_from_the_summary(tmp_path) -> None:
    summary = tmp_path / "summary.json"
    assert served_choice(summary) is None  # never fine-tuned
    summary.write_text(
        '{"served": {"kind": "transition_prior", "model_version": "transition-prior", "prior_weight": 1e6}}'
    )
    choice = served_choice(summary)
    assert choice is not None and choice.kind == "transition_prior"


def test_the_summary_round_trips_through_its_json_file(tmp_path) -> None:
    """The gate and the summary written by fine-tuning read back equal, with the same JSON keys."""
    import json

    from serendipity.mllm.results import EvidenceGroup, FinetuneSummary, ServedChoice, Validation

    gate = decide(_hits(30, 60), {"transition_prior": _hits(20, 60)}, GateConfig())
    served = ServedChoice("model", "v1", 0.5)
    summary = FinetuneSummary(
        steps=4,
        model_version="v1",
        served=served,
        served_metrics=gate.candidate,
        non_llm_baseline=recall_figures(np.array([], dtype=bool)),  # NaN recall: written as null
        validation=Validation(
            nominators={"candidate": gate.candidate},
            by_evidence={"warm": EvidenceGroup(n=60, nominators={"candidate": gate.candidate})},
        ),
        gate=gate.model_copy(update={"served_model_version": "v1"}),
        history=[{"step": 4, "loss": 1.5}],
    )
    path = summary.write(tmp_path / "summary.json")
    written = json.loads(path.read_text())
    assert set(written) == {"steps", "model_version", "served", "served_metrics", "non_llm_baseline",
                            "validation", "gate", "history"}  # fmt: skip
    assert written["validation"]["by_evidence"]["warm"] == {"n": 60, "candidate": gate.candidate.to_json()}
    assert written["gate"]["comparisons"]["transition_prior"]["only_candidate"] == 10
    assert written["gate"]["served_model_version"] == "v1" and written["non_llm_baseline"]["recall"] is None
    back = FinetuneSummary.read(path)
    assert back.served == served and served_choice(path) == served
    assert back.gate == summary.gate and back.validation == summary.validation
    assert back.non_llm_baseline is not None and back.non_llm_baseline.recall is None
    assert back.to_json() == written

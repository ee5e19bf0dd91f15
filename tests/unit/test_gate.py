"""The publish gate's rule on served-recall figures (the integration tests run it on real models)."""

from __future__ import annotations

import math

import pytest

from serendipity.config import load_config
from serendipity.mllm.gate import HOLD_BACK, PUBLISH, GateConfig, decide, recall_figures, serves_guess


def test_recall_figures_carry_the_wilson_interval() -> None:
    figures = recall_figures(20, 50)
    assert figures["recall"] == 0.4 and figures["hits"] == 20 and figures["items"] == 50
    assert figures["ci_low"] == pytest.approx(0.276, abs=1e-3)
    assert figures["ci_high"] == pytest.approx(0.538, abs=1e-3)
    assert math.isnan(recall_figures(0, 0)["recall"])


@pytest.mark.parametrize(
    ("candidate_hits", "margin", "rule", "decision", "worse"),
    [
        (20, 0.0, "not_worse_by_interval", PUBLISH, []),  # overlapping intervals: not significantly worse
        (5, 0.0, "not_worse_by_interval", HOLD_BACK, ["non_llm_guess"]),  # 0.1 vs 0.4 on 50 items
        (5, 0.2, "not_worse_by_interval", PUBLISH, []),  # the margin tolerates the shortfall
        (25, -1.0, "not_worse_by_interval", HOLD_BACK, ["non_llm_guess", "published"]),
        (5, 0.0, "always", PUBLISH, ["non_llm_guess"]),  # recorded, not enforced
    ],
)
def test_publish_only_when_not_significantly_worse_than_any_reference(
    candidate_hits: int, margin: float, rule: str, decision: str, worse: list[str]
) -> None:
    references = {"non_llm_guess": recall_figures(20, 50), "published": recall_figures(10, 50)}
    gate = decide(recall_figures(candidate_hits, 50), references, GateConfig(rule=rule, margin=margin))
    assert (gate["decision"], gate["significantly_worse_than"]) == (decision, worse)
    assert gate["references"] == references and gate["margin"] == margin


def test_a_reference_without_figures_does_not_hold_back() -> None:
    gate = decide(recall_figures(1, 50), {"published": {"error": "unreadable"}}, GateConfig())
    assert gate["decision"] == PUBLISH


def test_the_gate_is_configured_under_mllm(repo_root) -> None:
    config = load_config(repo_root / "configs" / "test.yaml", overrides={"mllm.gate.margin": 0.05})
    assert config.mllm.gate == GateConfig(rule="not_worse_by_interval", margin=0.05)


def test_inference_serves_the_guess_only_when_the_gate_left_no_model(tmp_path) -> None:
    summary, pointer = tmp_path / "summary.json", tmp_path / "latest"
    assert not serves_guess(summary, pointer)  # never fine-tuned: no silent fallback
    summary.write_text('{"model_version": "non-llm-guess"}')
    assert serves_guess(summary, pointer)
    pointer.write_text("mllm-1")
    assert not serves_guess(summary, pointer)

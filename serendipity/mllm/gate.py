"""The publish gate: a fine-tuned model becomes ``latest`` only when its served recall is not worse.

Served recall is what reaches Feast: the share of validation context items whose top sibling-constrained
answer (the decoding batch inference uses) is one of their label clusters. The candidate is compared
with each reference, on the same validation items: the best non-LLM guess and, when one exists, the
currently published model. Every recall carries its 95% Wilson interval ``[low, high]``.

Rules (``mllm.gate.rule``):

- ``not_worse_by_interval``: the candidate is *significantly worse* than a reference when
  ``candidate.high + margin < reference.low``; it is published when it is significantly worse than no
  reference. ``margin`` (``mllm.gate.margin``) is the shortfall tolerated on top of the intervals:
  0 compares the bare intervals, a positive margin lets more models through, a negative one demands more
  (at -1 every candidate is held back unless a reference's lower bound is 0).
- ``always``: publish every model; the figures are still computed and recorded.

A held-back candidate leaves ``latest`` as it was; without any published model, inference serves the
non-LLM guess under the model version ``non-llm-guess``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from serendipity.intervals import wilson_interval

if TYPE_CHECKING:
    from serendipity.config import PipelineConfig

NON_LLM_GUESS_VERSION = "non-llm-guess"  # model_version of features written from the non-LLM guess
GUESS_REFERENCE = "non_llm_guess"
PUBLISHED_REFERENCE = "published"
PUBLISH, HOLD_BACK, ALREADY_PUBLISHED = "publish", "hold back", "already published"


class GateConfig(BaseModel):
    """When a fine-tuned model is published as ``latest`` (see the module docstring for the rules)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: Literal["not_worse_by_interval", "always"] = "not_worse_by_interval"
    margin: float = Field(0.0, ge=-1.0, le=1.0)


def recall_figures(hits: int, items: int) -> dict[str, float | int]:
    """Hits, items, recall and its 95% Wilson interval."""
    low, high = wilson_interval(float(hits), items)
    recall = hits / items if items else math.nan
    return {"hits": hits, "items": items, "recall": recall, "ci_low": low, "ci_high": high}


def served_figures(scores: dict[str, Any]) -> dict[str, float | int]:
    """``recall_figures`` of an evaluation result (``EvalResult.as_dict()``) of the served decoding."""
    items = int(scores["items"])
    return recall_figures(round(float(scores["recall"]) * items), items)


def significantly_worse(candidate: dict[str, Any], reference: dict[str, Any], margin: float) -> bool:
    """Whether the candidate's interval lies below the reference's by more than ``margin``."""
    high, low = candidate.get("ci_high", math.nan), reference.get("ci_low", math.nan)
    if not (math.isfinite(high) and math.isfinite(low)):
        return False
    return high + margin < low


def decide(
    candidate: dict[str, Any], references: dict[str, dict[str, Any]], settings: GateConfig
) -> dict[str, Any]:
    """The gate's decision and its figures (JSON-ready)."""
    worse = [name for name, ref in references.items() if significantly_worse(candidate, ref, settings.margin)]
    publish = settings.rule == "always" or not worse
    return {
        "rule": settings.rule,
        "margin": settings.margin,
        "candidate": candidate,
        "references": references,
        "significantly_worse_than": worse,
        "decision": PUBLISH if publish else HOLD_BACK,
    }


def run_gate(
    config: PipelineConfig,
    model: Any,
    processor: Any,
    guess: dict[str, Any],
    published: Path | None,
) -> dict[str, Any]:
    """Served scores of the candidate (and of the ``published`` model directory), and the decision."""
    from serendipity.mllm.data import load_validation
    from serendipity.mllm.evaluation import served_scores
    from serendipity.mllm.model import MllmLoadError, load_model, model_version

    validation = load_validation(config)
    scores = served_scores(config, model, processor, validation)
    references = {GUESS_REFERENCE: recall_figures(int(guess["hits"]), int(guess["items"]))}
    if published is not None:
        try:
            figures = served_figures(served_scores(config, *load_model(published), validation))
        except MllmLoadError as error:  # recorded; the candidate is then judged against the guess alone
            figures = {"error": str(error)}
        references[PUBLISHED_REFERENCE] = {**figures, "model_version": model_version(published)}
    return {"served_metrics": scores, "gate": decide(served_figures(scores), references, config.mllm.gate)}


def serves_guess(finetune_summary: Path, latest_pointer: Path) -> bool:
    """Whether inference serves the non-LLM guess: the gate held every fine-tuned model back."""
    if latest_pointer.is_file() or not finetune_summary.is_file():
        return False
    return json.loads(finetune_summary.read_text()).get("model_version") == NON_LLM_GUESS_VERSION

"""The publish gate: a fine-tuned nominator is published only when it is not worse than any reference.

The candidate (the fine-tuned model combined with the transition prior at its fitted weight) and each
reference are judged on the same validation items (the latest pairs, never used to fit anything):
the non-LLM guess, the transition prior alone and, when one exists, the published model. Each
comparison is paired: n, both recalls, the recall difference with its 95% paired-bootstrap interval and
the exact McNemar p-value of the discordant items.

Rules (``mllm.gate.rule``, :class:`serendipity.config.GateConfig`):

- ``paired_not_worse``: publish when, against every reference, the candidate's recall is at least the
  reference's minus ``margin`` and the paired test does not find it worse at level ``alpha``.
  Otherwise the best reference is served (a held-back candidate leaves ``latest`` as it was).
- ``always``: publish every model; the figures are still computed and recorded.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from serendipity.config import GateConfig
from serendipity.intervals import exact_mcnemar, paired_bootstrap_difference, wilson_interval
from serendipity.mllm.results import (
    FinetuneSummary,
    GateDecision,
    PairedComparison,
    RecallFigures,
    ServedChoice,
    ServedKind,
)

NON_LLM_GUESS_VERSION = "non-llm-guess"  # model_version of features written from the non-LLM guess
TRANSITION_PRIOR_VERSION = "transition-prior"  # ... from the transition prior alone
GUESS_REFERENCE = "non_llm_guess"
PRIOR_REFERENCE = "transition_prior"
PUBLISHED_REFERENCE = "published"
PUBLISH, HOLD_BACK, ALREADY_PUBLISHED = "publish", "hold back", "already published"
PAIRED_TEST = "exact McNemar (two-sided) with a paired bootstrap 95% interval of the recall difference"
SMALL_SAMPLE = 200  # below this many validation items, the report warns that recalls are noisy

REFERENCE_KIND: dict[str, ServedKind] = {
    PUBLISHED_REFERENCE: "model",
    PRIOR_REFERENCE: "transition_prior",
    GUESS_REFERENCE: "non_llm_guess",
}


def recall_figures(hits: np.ndarray) -> RecallFigures:
    """Hits, items, recall and its 95% Wilson interval of a 0/1 hit vector."""
    count, total = int(np.sum(hits)), len(hits)
    low, high = wilson_interval(float(count), total)
    return RecallFigures(
        hits=count, items=total, recall=count / total if total else math.nan, ci_low=low, ci_high=high
    )


def paired_comparison(candidate: np.ndarray, reference: np.ndarray) -> PairedComparison:
    """The candidate against one reference on the same items."""
    candidate, reference = np.asarray(candidate, dtype=bool), np.asarray(reference, dtype=bool)
    only_candidate = int((candidate & ~reference).sum())
    only_reference = int((reference & ~candidate).sum())
    difference, low, high = paired_bootstrap_difference(candidate, reference)
    return PairedComparison(
        n=len(candidate),
        candidate_recall=float(candidate.mean()) if len(candidate) else math.nan,
        reference_recall=float(reference.mean()) if len(reference) else math.nan,
        difference=difference,
        difference_ci_low=low,
        difference_ci_high=high,
        only_candidate=only_candidate,
        only_reference=only_reference,
        p_value=exact_mcnemar(only_candidate, only_reference),
        test=PAIRED_TEST,
    )


def _worse(comparison: PairedComparison, settings: GateConfig) -> bool:
    assert comparison.candidate_recall is not None and comparison.reference_recall is not None
    assert comparison.p_value is not None and comparison.difference is not None
    short = comparison.candidate_recall < comparison.reference_recall - settings.margin
    significant = comparison.p_value < settings.alpha and comparison.difference < 0
    return bool(short or significant)


def decide(candidate: np.ndarray, references: dict[str, np.ndarray], settings: GateConfig) -> GateDecision:
    """The gate's decision, every paired comparison and the best reference.

    ``references`` maps a reference name to its hit vector on the candidate's items; on equal recall the
    earlier reference counts as the better one.
    """
    comparisons = {name: paired_comparison(candidate, hits) for name, hits in references.items()}
    worse = [name for name, comparison in comparisons.items() if _worse(comparison, settings)]
    best = max(
        references,
        key=lambda name: float(np.mean(references[name])) if len(references[name]) else -1.0,
        default=None,
    )
    return GateDecision(
        rule=settings.rule,
        margin=settings.margin,
        alpha=settings.alpha,
        n=len(candidate),
        small_sample=len(candidate) < SMALL_SAMPLE,
        candidate=recall_figures(candidate),
        references={name: recall_figures(hits) for name, hits in references.items()},
        comparisons=comparisons,
        worse_than=worse,
        best_reference=best,
        decision=PUBLISH if settings.rule == "always" or not worse else HOLD_BACK,
    )


def served_choice(finetune_summary: Path) -> ServedChoice | None:
    """The choice recorded in the fine-tuning summary (None before any fine-tuning)."""
    if not finetune_summary.is_file():
        return None
    return FinetuneSummary.read(finetune_summary).served

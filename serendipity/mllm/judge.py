"""Judging a fine-tuned model as a nominator: fit its prior weight, score it and the references.

The calibration split fits lambda of the combined nominator; the validation split (never used to fit
anything) compares the candidate, the model alone, the transition prior alone, the non-LLM guess and
the published model on the same items, overall and split by whether the context item had logged
transitions of its own in the training period (warm: the prior knows it) or not (cold).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serendipity.config import PipelineConfig
from serendipity.layout import WorkLayout
from serendipity.mllm.data import load_holdout, load_tree
from serendipity.mllm.gate import (
    ALREADY_PUBLISHED,
    GUESS_REFERENCE,
    PRIOR_REFERENCE,
    PUBLISH,
    PUBLISHED_REFERENCE,
    SMALL_SAMPLE,
    ServedChoice,
    decide,
    recall_figures,
)
from serendipity.mllm.nominator import held_out, model_scores
from serendipity.mllm.results import (
    Calibration,
    EvidenceGroup,
    FinetuneSummary,
    GateDecision,
    RecallFigures,
)
from serendipity.mllm.satisfaction_guess import best_sibling_guess
from serendipity.nomination.combine import PRIOR_ALONE, ScoredItem, fit_weight, fit_weights, hits
from serendipity.nomination.prior import PriorInfo, load_prior
from serendipity.nomination.similarity import TextSimilarity
from serendipity.schema import ITEMS_FILE, SPLIT_CALIBRATION, SPLIT_VALIDATION

CANDIDATE, MODEL_ALONE, WITHOUT_TEXT = "candidate", "model_alone", "candidate_without_text"


@dataclass
class Judged:
    weight: float  # lambda fitted on the calibration split
    text_weight: float  # mu of the text-similarity feature (0 when it is off)
    prior: PriorInfo
    calibration: Calibration
    nominators: dict[str, RecallFigures]  # recall figures on the validation items, per nominator
    by_evidence: dict[str, EvidenceGroup]  # the same, split into warm and cold context items
    gate: GateDecision


def _guess_hits(config: PipelineConfig, items: list[ScoredItem], own: dict[int, int]) -> np.ndarray:
    guess, _ = best_sibling_guess(config)
    return np.array([float(guess.get(own[item.item_id]) in item.labels) for item in items])


def judge(config: PipelineConfig, model: Any, processor: Any, published: Path | None) -> Judged:
    """Fit, score and gate the candidate ``model`` against the references (and the ``published`` model)."""
    from serendipity.mllm.model import MllmLoadError, load_model, model_metadata

    layout, level = WorkLayout.of(config), config.mining.level
    tree, prior = load_tree(layout), load_prior(layout)
    similarity = (
        TextSimilarity(layout.catalog_dir() / ITEMS_FILE, tree, level)
        if config.mllm.text_similarity
        else None
    )

    def scored(split: str, candidate: Any, processor: Any) -> tuple[list[ScoredItem], dict[int, int]]:
        _, items, labels = load_holdout(config, split)
        scores = model_scores(config, candidate, processor, items, tree)
        own = {i.item_id: i.cluster_at(level) for i in items}
        return held_out(items, labels, tree, level, prior, scores, similarity), own

    calibration, _ = scored(SPLIT_CALIBRATION, model, processor)
    weight, weight_recalls = fit_weight(calibration)
    validation, own = scored(SPLIT_VALIDATION, model, processor)
    vectors = {CANDIDATE: hits(validation, weight)}
    text_weight, text_recalls = 0.0, {}
    if similarity is not None:
        vectors[WITHOUT_TEXT] = vectors[CANDIDATE]
        weight, text_weight, text_recalls = fit_weights(calibration)
        vectors[CANDIDATE] = hits(validation, weight, text_weight)
    vectors |= {
        MODEL_ALONE: hits(validation, 0.0),
        PRIOR_REFERENCE: hits(validation, PRIOR_ALONE),
        GUESS_REFERENCE: _guess_hits(config, validation, own),
    }
    references = [PRIOR_REFERENCE, GUESS_REFERENCE]
    if published is not None:
        try:
            published_items, _ = scored(SPLIT_VALIDATION, *load_model(published))
            recorded = model_metadata(published)
            weights = recorded.prior_weight or 0.0, recorded.text_weight or 0.0
            vectors[PUBLISHED_REFERENCE] = hits(published_items, *weights)
            references.insert(0, PUBLISHED_REFERENCE)
        except MllmLoadError:  # an unreadable published model is no reference; the others still are
            pass
    gate = decide(vectors[CANDIDATE], {name: vectors[name] for name in references}, config.mllm.gate)
    warm = np.array([item.warm for item in validation], dtype=bool)
    by_evidence = {
        group: EvidenceGroup(
            n=int(mask.sum()), nominators={name: recall_figures(v[mask]) for name, v in vectors.items()}
        )
        for group, mask in (("warm", warm), ("cold", ~warm))
    }
    return Judged(
        weight=weight,
        text_weight=text_weight,
        prior=prior.info,
        calibration=Calibration(
            n=len(calibration),
            weight=weight,
            text_weight=text_weight,
            recall_by_weight={str(k): v for k, v in weight_recalls.items()},
            recall_by_weight_and_text_weight=text_recalls,
        ),
        nominators={name: recall_figures(v) for name, v in vectors.items()},
        by_evidence=by_evidence,
        gate=gate,
    )


def served_nominator(served: ServedChoice, gate: GateDecision) -> str:
    """Which of the judged nominators is the one served."""
    if served.kind == "model":
        return CANDIDATE if gate.decision in (PUBLISH, ALREADY_PUBLISHED) else PUBLISHED_REFERENCE
    return PRIOR_REFERENCE if served.kind == "transition_prior" else GUESS_REFERENCE


def feature_version(served: ServedChoice, prior: PriorInfo) -> str:
    """The ``model_version`` the features carry: the model and, when it is used, the prior's snapshot."""
    if served.kind == "non_llm_guess" or (served.kind == "model" and served.prior_weight == 0.0):
        return served.model_version
    return f"{served.model_version}+{prior.version}"


NOMINATOR_LABELS = {
    CANDIDATE: "candidate (model + prior)",
    WITHOUT_TEXT: "candidate without text feature",
    MODEL_ALONE: "model alone",
    PRIOR_REFERENCE: "transition prior alone",
    GUESS_REFERENCE: "non-LLM guess",
    PUBLISHED_REFERENCE: "published model",
}


def _recall(figures: RecallFigures) -> str:
    return f"{figures.recall:.3f} [{figures.ci_low:.3f}, {figures.ci_high:.3f}]"


def describe(summary: FinetuneSummary) -> list[str]:
    """The fine-tuning summary's judgement as lines a person reads (CLI output)."""
    gate, validation, calibration = summary.gate, summary.validation, summary.calibration
    if gate is None or validation is None or calibration is None:
        raise ValueError("the summary has no judgement (written by an earlier version of fine-tuning)")
    lines = [
        f"validation items n={gate.n} (the latest pairs; calibration n={calibration.n}, "
        f"prior weight lambda={summary.prior_weight:g})"
    ]
    if gate.small_sample:
        lines.append(f"WARNING: n < {SMALL_SAMPLE}: recalls this noisy decide little")
    for name, figures in validation.nominators.items():
        label = NOMINATOR_LABELS.get(name, name)
        lines.append(f"  {label:<28} recall {_recall(figures)} (n={figures.items})")
    for group, evidence in validation.by_evidence.items():
        parts = ", ".join(
            f"{name} {evidence.nominators[name].recall:.3f}"
            for name in NOMINATOR_LABELS
            if name in evidence.nominators
        )
        lines.append(f"  {group} context items (n={evidence.n}): {parts}")
    for name, comparison in gate.comparisons.items():
        lines.append(
            f"  candidate vs {name}: difference {comparison.difference:+.3f} "
            f"[{comparison.difference_ci_low:+.3f}, {comparison.difference_ci_high:+.3f}], "
            f"exact McNemar p={comparison.p_value:.3g}"
        )
    lines.append(f"gate ({gate.rule}): {gate.decision}; serving {summary.feature_version}")
    return lines

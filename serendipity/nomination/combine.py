"""The combined nominator: score(c) = log P_model(c | item) + weight * log P_prior(c | item's evidence)
[+ text_weight * cos(item text, c's description) when the text-similarity feature is on].

``weight`` (lambda) and ``text_weight`` (mu) are fitted on the calibration split: lambda 0 is the model
alone, ``PRIOR_ALONE`` the prior alone (the model then only breaks the prior's ties). A nomination ranks
an item's candidate siblings with the softmax of the combined scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PRIOR_ALONE = 1e6  # a weight at which the prior decides and the model only breaks its ties
WEIGHT_GRID: tuple[float, ...] = (0.0, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, PRIOR_ALONE)
TEXT_WEIGHT_GRID: tuple[float, ...] = (0.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)  # cosines differ by ~0.1
_FLOOR = 1e-12


@dataclass(frozen=True)
class Nomination:
    """An item's candidates ranked best first, with the combined probabilities."""

    item_id: int
    clusters: tuple[int, ...]
    probabilities: tuple[float, ...]
    reasoning: str = ""

    @property
    def best(self) -> int | None:
        return self.clusters[0] if self.clusters else None


def _log(values: Sequence[float]) -> np.ndarray:
    return np.log(np.maximum(np.asarray(values, dtype=float), _FLOOR))


def nominate(
    item_id: int,
    candidates: Sequence[int],
    model_log_probs: Sequence[float] | None,
    prior_probs: Sequence[float] | None,
    weight: float,
    reasoning: str = "",
    similarity: Sequence[float] | None = None,
    text_weight: float = 0.0,
) -> Nomination:
    """Rank ``candidates`` by the combined score; ``None`` for a missing part leaves it out (uniform)."""
    if not candidates:
        return Nomination(item_id, (), (), reasoning)
    model = np.zeros(len(candidates)) if model_log_probs is None else np.asarray(model_log_probs, dtype=float)
    prior = np.zeros(len(candidates)) if prior_probs is None else _log(prior_probs)
    scores = model + weight * prior
    if similarity is not None and text_weight:
        scores = scores + text_weight * np.asarray(similarity, dtype=float)
    finite = np.isfinite(scores)
    shifted = np.where(finite, scores - (scores[finite].max() if finite.any() else 0.0), -np.inf)
    probabilities = np.exp(shifted)
    probabilities = probabilities / probabilities.sum() if probabilities.sum() > 0 else probabilities
    order = sorted(range(len(candidates)), key=lambda i: (-scores[i], int(candidates[i])))
    return Nomination(
        item_id,
        tuple(int(candidates[i]) for i in order),
        tuple(float(probabilities[i]) for i in order),
        reasoning,
    )


def log_softmax(log_likelihoods: Sequence[float]) -> list[float]:
    """Normalise candidate log-likelihoods to log-probabilities over the candidates."""
    values = np.asarray(log_likelihoods, dtype=float)
    if values.size == 0:
        return []
    top = values[np.isfinite(values)].max() if np.isfinite(values).any() else 0.0
    return list(values - (top + math.log(np.exp(values - top).sum())))


@dataclass(frozen=True)
class ScoredItem:
    """What the nominator knows of one held-out item: candidates, both distributions, its labels."""

    item_id: int
    candidates: tuple[int, ...]
    model_log_probs: tuple[float, ...] | None
    prior_probs: tuple[float, ...]
    labels: frozenset[int]
    warm: bool = False
    similarity: tuple[float, ...] | None = None

    def nomination(self, weight: float, text_weight: float = 0.0) -> Nomination:
        return nominate(
            self.item_id,
            self.candidates,
            self.model_log_probs,
            self.prior_probs,
            weight,
            similarity=self.similarity,
            text_weight=text_weight,
        )


def hits(items: Sequence[ScoredItem], weight: float, text_weight: float = 0.0) -> np.ndarray:
    """1 where the nomination at ``weight`` (and ``text_weight``) names one of the item's labels, else 0."""
    return np.array([float(item.nomination(weight, text_weight).best in item.labels) for item in items])


def _label_log_probability(items: Sequence[ScoredItem], weight: float, text_weight: float = 0.0) -> float:
    total = 0.0
    for item in items:
        ranked = item.nomination(weight, text_weight)
        pairs = zip(ranked.clusters, ranked.probabilities, strict=True)
        total += math.log(max(_FLOOR, sum(p for c, p in pairs if c in item.labels)))
    return total / max(1, len(items))


def fit_weight(
    items: Sequence[ScoredItem], grid: Sequence[float] = WEIGHT_GRID
) -> tuple[float, dict[float, float]]:
    """The grid weight with the highest recall on ``items`` (ties: the higher mean log-probability of
    the labels, then the smaller weight), and each weight's recall."""
    recalls = {weight: float(hits(items, weight).mean()) if items else math.nan for weight in grid}
    if not items:
        return 0.0, recalls
    best = max(grid, key=lambda w: (recalls[w], _label_log_probability(items, w), -w))
    return best, recalls


def fit_weights(
    items: Sequence[ScoredItem],
    grid: Sequence[float] = WEIGHT_GRID,
    text_grid: Sequence[float] = TEXT_WEIGHT_GRID,
) -> tuple[float, float, dict[str, float]]:
    """(lambda, mu) of the grid with the highest recall (ties as in ``fit_weight``, then the smaller mu),
    and each pair's recall keyed ``"lambda/mu"``."""
    pairs = [(w, t) for w in grid for t in text_grid]
    recalls = {pair: float(hits(items, *pair).mean()) if items else math.nan for pair in pairs}
    if not items:
        return 0.0, 0.0, {f"{w:g}/{t:g}": r for (w, t), r in recalls.items()}
    best = max(pairs, key=lambda p: (recalls[p], _label_log_probability(items, *p), -p[0], -p[1]))
    return best[0], best[1], {f"{w:g}/{t:g}": r for (w, t), r in recalls.items()}

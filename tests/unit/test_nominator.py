"""The combined nominator: lambda 0 is the model alone, a large lambda the prior alone; the weight fit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from serendipity.nomination.combine import PRIOR_ALONE, ScoredItem, fit_weight, hits, log_softmax, nominate


def _item(item_id: int, model: list[float], prior: list[float], label: int) -> ScoredItem:
    return ScoredItem(item_id, (1, 2, 3), tuple(log_softmax(model)), tuple(prior), frozenset({label}))


def test_weight_zero_is_the_model_alone_and_a_large_weight_the_prior_alone() -> None:
    model = log_softmax([0.0, -1.0, -3.0])  # the model prefers 1
    prior = [0.1, 0.2, 0.7]  # the logs prefer 3
    assert nominate(7, (1, 2, 3), model, prior, 0.0).clusters == (1, 2, 3)
    assert nominate(7, (1, 2, 3), model, prior, PRIOR_ALONE).clusters == (3, 2, 1)
    alone = nominate(7, (1, 2, 3), model, None, 0.0)
    assert alone.probabilities == pytest.approx([math.exp(v) for v in model])
    prior_only = nominate(7, (1, 2, 3), None, prior, PRIOR_ALONE)
    assert prior_only.best == 3 and sum(prior_only.probabilities) == pytest.approx(1.0)


def test_the_prior_alone_breaks_its_ties_with_the_model() -> None:
    ranked = nominate(1, (1, 2, 3), log_softmax([-2.0, 0.0, -1.0]), [0.4, 0.4, 0.2], PRIOR_ALONE)
    assert ranked.clusters == (2, 1, 3)


def test_the_fitted_weight_follows_whichever_source_is_right_on_calibration() -> None:
    # The model is right on every item and the prior on none: lambda 0 wins.
    model_right = [_item(i, [0.0, -2.0, -2.0], [0.1, 0.1, 0.8], label=1) for i in range(20)]
    weight, recalls = fit_weight(model_right)
    assert weight == 0.0 and recalls[0.0] == 1.0 and recalls[PRIOR_ALONE] == 0.0
    # The prior is right and the model only weakly wrong: a large weight wins.
    prior_right = [_item(i, [0.0, -0.1, -0.1], [0.1, 0.1, 0.8], label=3) for i in range(20)]
    weight, recalls = fit_weight(prior_right)
    assert recalls[weight] == 1.0 and weight > 0
    assert hits(prior_right, 0.0).sum() == 0 and np.all(hits(prior_right, PRIOR_ALONE) == 1)


def test_the_text_feature_reranks_only_with_its_weight_and_is_fitted_when_it_helps() -> None:
    from serendipity.nomination.combine import fit_weights

    model, prior, cosines = log_softmax([0.0, -0.2, -0.2]), [0.34, 0.33, 0.33], [0.1, 0.1, 0.3]
    assert nominate(1, (1, 2, 3), model, prior, 0.0, similarity=cosines).best == 1  # mu 0: no effect
    assert nominate(1, (1, 2, 3), model, prior, 0.0, similarity=cosines, text_weight=10.0).best == 3
    text_right = [
        ScoredItem(i, (1, 2, 3), tuple(model), tuple(prior), frozenset({3}), similarity=tuple(cosines))
        for i in range(10)
    ]
    weight, text_weight, recalls = fit_weights(text_right)
    assert text_weight > 0 and recalls[f"{weight:g}/{text_weight:g}"] == 1.0 and recalls["0/0"] == 0.0

"""The model's part of the combined nominator: its distribution over each item's sibling clusters.

Sibling sets up to ``inference.score_all_max_siblings`` are scored whole (``scoring.score_siblings``);
larger ones fall back to sibling-constrained beam search, whose beams are the only candidates the model
ranks. ``held_out`` joins the model's distribution with the transition prior and the labels of a
held-out split, the input of the nominator's weight fit and of the publish gate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from serendipity.config import PipelineConfig
from serendipity.mllm.generation import Prediction, serendipitous_candidates
from serendipity.mllm.prompts import ItemMedia
from serendipity.mllm.scoring import SiblingScores, try_score_siblings
from serendipity.nomination.combine import Nomination, ScoredItem, log_softmax, nominate
from serendipity.nomination.prior import TransitionPrior
from serendipity.nomination.similarity import TextSimilarity
from serendipity.tree import ClusterTree


def scores_all_siblings(tree: ClusterTree, level: int, limit: int) -> bool:
    """Whether every sibling set at ``level`` is small enough to score whole."""
    return max((len(tree.siblings(c)) for c in tree.at_level(level)), default=0) <= limit


def model_scores(
    config: PipelineConfig, model: Any, processor: Any, items: Sequence[ItemMedia], tree: ClusterTree
) -> list[SiblingScores]:
    """The model's log-likelihood of each candidate sibling, per item."""
    from serendipity.mllm.metrics import predict_serendipitous_clusters

    level, mllm = config.mining.level, config.mllm
    was_training = model.training
    model.eval()
    try:
        if scores_all_siblings(tree, level, config.inference.score_all_max_siblings):
            scored = try_score_siblings(
                model,
                processor,
                items,
                tree,
                style=mllm.prompt_style,
                level=level,
                batch_size=mllm.eval_batch_size,
            )
            if scored is not None:
                return scored
        beams = max(mllm.num_beams, config.inference.top_k)
        ranked = predict_serendipitous_clusters(
            model,
            processor,
            items,
            tree,
            style=mllm.prompt_style,
            level=level,
            num_beams=beams,
            top_k=beams,
            constrained=True,
            candidates=[serendipitous_candidates(tree, item.cluster_at(level), level) for item in items],
            batch_size=mllm.eval_batch_size,
        )
    finally:
        model.train(was_training)
    return [
        SiblingScores(
            item.item_id,
            tuple(p.cluster_id for p in predictions if p.cluster_id is not None),
            tuple(p.score for p in predictions if p.cluster_id is not None),
            predictions[0].reasoning if predictions else "",
        )
        for item, predictions in zip(items, ranked, strict=True)
    ]


def held_out(
    items: Sequence[ItemMedia],
    labels: dict[int, set[int]],
    tree: ClusterTree,
    level: int,
    prior: TransitionPrior,
    scores: Sequence[SiblingScores] | None,
    similarity: TextSimilarity | None = None,
) -> list[ScoredItem]:
    """Held-out items with the prior over their siblings and, given ``scores``, the model's distribution
    (and, given ``similarity``, the text cosines of their siblings)."""
    by_item = {s.item_id: s for s in scores or []}
    if similarity is not None:
        similarity.prepare([item.item_id for item in items])
    result = []
    for item in items:
        own = item.cluster_at(level)
        model = by_item.get(item.item_id)
        candidates = (
            tuple(model.candidates)
            if model is not None
            else tuple(serendipitous_candidates(tree, own, level))
        )
        result.append(
            ScoredItem(
                item.item_id,
                candidates,
                tuple(log_softmax(model.log_likelihoods)) if model is not None else None,
                tuple(prior.probabilities(item.item_id, own, candidates)),
                frozenset(labels[item.item_id]),
                prior.is_warm(item.item_id),
                _similarity(similarity, item.item_id, candidates),
            )
        )
    return result


def _similarity(
    similarity: TextSimilarity | None, item_id: int, candidates: Sequence[int]
) -> tuple[float, ...] | None:
    scores = similarity.scores(item_id, candidates) if similarity is not None else None
    return tuple(scores) if scores is not None else None


def predictions_of(nomination: Nomination, tree: ClusterTree, top_k: int) -> list[Prediction]:
    """A nomination as inference's ranked predictions (score: the combined probability)."""
    return [
        Prediction(cluster, tree.description(cluster), probability, nomination.reasoning)
        for cluster, probability in list(zip(nomination.clusters, nomination.probabilities, strict=True))[
            :top_k
        ]
    ]


def nominate_items(
    items: Sequence[ItemMedia],
    level: int,
    tree: ClusterTree,
    prior: TransitionPrior | None,
    weight: float,
    scores: Sequence[SiblingScores] | None,
    similarity: TextSimilarity | None = None,
    text_weight: float = 0.0,
) -> list[Nomination]:
    """Each item's nomination: the model's scores (if any) combined with the prior at ``weight`` (and
    the text cosines at ``text_weight``)."""
    by_item = {s.item_id: s for s in scores or []}
    if similarity is not None and text_weight:
        similarity.prepare([item.item_id for item in items])
    nominations = []
    for item in items:
        own = item.cluster_at(level)
        model = by_item.get(item.item_id)
        candidates = (
            model.candidates if model is not None else tuple(serendipitous_candidates(tree, own, level))
        )
        prior_probs = prior.probabilities(item.item_id, own, candidates) if prior is not None else None
        model_log_probs = log_softmax(model.log_likelihoods) if model is not None else None
        reasoning = model.reasoning if model is not None else ""
        cosines = _similarity(similarity, item.item_id, candidates) if text_weight else None
        nominations.append(
            nominate(
                item.item_id,
                candidates,
                model_log_probs,
                prior_probs,
                weight,
                reasoning,
                cosines,
                text_weight,
            )
        )
    return nominations

"""The experiment's exploration arms, on a small in-memory Recommender with known item vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from serendipity.config import EvalConfig
from serendipity.eval.arms import (
    ARMS,
    EXPLORATION,
    EXPLORATION_NOVEL,
    ExplorationArm,
    NovelExplorationArm,
    SlateRequest,
    arm_names,
    build_arms,
)
from serendipity.eval.claims import HOLDS, mllm_highest_novelty
from serendipity.eval.results import ExperimentSummary
from serendipity.retrieval.data import ItemVocabulary
from serendipity.retrieval.index import ClusterIndex
from serendipity.retrieval.model import SASRec
from serendipity.retrieval.recommend import Recommender
from serendipity.tree import ClusterTree

CLUSTERS = (10, 20, 30)
ITEMS_PER_CLUSTER = 6
DIM = 8
K = 4


@pytest.fixture(scope="module")
def recommender() -> Recommender:
    """Items 1..18, six per cluster; each cluster's vectors lie around its own axis."""
    rng = np.random.default_rng(0)
    cluster_ids = np.repeat(CLUSTERS, ITEMS_PER_CLUSTER)
    item_ids = np.arange(1, len(cluster_ids) + 1)
    axes = np.eye(DIM)[: len(CLUSTERS)]
    vectors = np.repeat(axes, ITEMS_PER_CLUSTER, axis=0) + 0.3 * rng.normal(size=(len(item_ids), DIM))
    torch.manual_seed(0)
    model = SASRec(len(item_ids), embedding_dim=DIM, max_length=5, num_layers=1, num_heads=1, dropout=0.0)
    with torch.no_grad():
        model.item_embedding.weight[1:] = torch.from_numpy(vectors).float()
    index = ClusterIndex.build(item_ids, cluster_ids, model.item_vectors().detach().numpy())
    vocabulary = ItemVocabulary(item_ids, cluster_ids)
    return Recommender(model, index, None, ClusterTree({}), vocabulary=vocabulary)


def _request(context: int, stored: list[int], engaged: set[int]) -> SlateRequest:
    return SlateRequest(7, context, [], stored, frozenset(engaged), (0, 0, 0, 7))


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def _item_vector(recommender: Recommender, item_id: int) -> np.ndarray:
    return recommender.model.item_vectors().detach().numpy()[item_id - 1]  # items 1..n are indices 1..n


def _sequence_query(recommender: Recommender, sequence: list[int]) -> np.ndarray:
    return recommender.query_vectors([sequence])[0]


def _nearest(recommender: Recommender, query: np.ndarray, seen: set[int], allowed: set[int]) -> list[int]:
    """Top K of every item by inner product with ``query``, computed here from the model's vectors."""
    item_ids = recommender.vocabulary.item_ids
    scores = recommender.model.item_vectors().detach().numpy() @ query
    ranked = [int(item_ids[row]) for row in np.argsort(-scores, kind="stable")]
    return [item for item in ranked if item not in seen and recommender.cluster_of(item) in allowed][:K]


def test_exploration_is_the_context_weighted_sequence_query_without_a_novelty_filter(
    recommender: Recommender,
) -> None:
    request = _request(context=2, stored=[8, 9, 13], engaged={10, 20})  # context in cluster 10
    weight = 0.8
    slate = ExplorationArm(recommender, weight).recommend([request], K)[0]

    context = _item_vector(recommender, 2)
    history = _sequence_query(recommender, [8, 9, 13, 2])
    query = weight * _unit(context) + (1 - weight) * _unit(history)
    expected = _nearest(recommender, query, request.seen, set(CLUSTERS))

    assert [item.item_id for item in slate.items] == expected
    assert slate.source == EXPLORATION
    assert {item.cluster_id for item in slate.items} & request.engaged_clusters  # engaged clusters stay
    assert not {item.item_id for item in slate.items} & request.seen


def test_the_context_weight_moves_the_slate_between_context_and_history(recommender: Recommender) -> None:
    request = _request(context=2, stored=[13, 14, 15, 16], engaged={10, 30})
    near_context = ExplorationArm(recommender, 1.0).recommend([request], K)[0]
    near_history = ExplorationArm(recommender, 0.0).recommend([request], K)[0]
    assert near_context.items != near_history.items
    history = _sequence_query(recommender, [13, 14, 15, 16, 2])
    assert [i.item_id for i in near_context.items] == _nearest(
        recommender, _item_vector(recommender, 2), request.seen, set(CLUSTERS)
    )
    assert [i.item_id for i in near_history.items] == _nearest(
        recommender, history, request.seen, set(CLUSTERS)
    )


def test_an_unknown_context_item_leaves_the_sequence_query(recommender: Recommender) -> None:
    request = _request(context=999, stored=[3, 4], engaged={10})
    slate = ExplorationArm(recommender, 0.8).recommend([request], K)[0]
    expected = _nearest(recommender, _sequence_query(recommender, [3, 4]), request.seen, set(CLUSTERS))
    assert [item.item_id for item in slate.items] == expected


def test_the_novel_variant_excludes_engaged_clusters_and_the_context_cluster(
    recommender: Recommender,
) -> None:
    request = _request(context=2, stored=[8], engaged={20})
    slate = NovelExplorationArm(recommender).recommend([request], K)[0]
    expected = _nearest(recommender, _item_vector(recommender, 2), request.seen, {30})
    assert [item.item_id for item in slate.items] == expected
    assert {item.cluster_id for item in slate.items} == {30}
    assert slate.source == EXPLORATION_NOVEL

    everything = _request(context=2, stored=[8], engaged={20, 30})  # every cluster blocked: no filter
    unfiltered = NovelExplorationArm(recommender).recommend([everything], K)[0]
    assert [item.item_id for item in unfiltered.items] == _nearest(
        recommender, _item_vector(recommender, 2), everything.seen, set(CLUSTERS)
    )


def test_the_experiment_runs_the_papers_arms_and_only_named_diagnostics(recommender: Recommender) -> None:
    default = EvalConfig()
    assert arm_names(default) == ARMS and EXPLORATION_NOVEL not in ARMS
    arms = build_arms(recommender, default)
    assert list(arms) == list(ARMS)
    exploration = arms[EXPLORATION]
    assert isinstance(exploration, ExplorationArm) and not isinstance(exploration, NovelExplorationArm)
    assert exploration.context_weight == default.exploration_context_weight == 0.8

    settings = EvalConfig(extra_arms=("exploration_novel",), exploration_context_weight=0.6)
    arms = build_arms(recommender, settings)
    assert list(arms) == [*ARMS, EXPLORATION_NOVEL]
    assert isinstance(arms[EXPLORATION_NOVEL], NovelExplorationArm)
    assert arms[EXPLORATION].context_weight == 0.6  # type: ignore[attr-defined]


def test_the_novel_variant_never_decides_the_novelty_claim() -> None:
    def stats(mean: float) -> dict[str, float]:
        return {"mean": mean, "ci_low": mean - 1, "ci_high": mean + 1}

    gains = {"exploitation": 0.0, "exploration": 10.0, "bandit": 20.0, "mllm": 40.0, EXPLORATION_NOVEL: 90.0}
    experiment = ExperimentSummary.model_validate(
        {
            "arms": [*ARMS, EXPLORATION_NOVEL],
            "extra_arms": [EXPLORATION_NOVEL],
            "metrics": {"novelty_gain_pct": {arm: stats(gain) for arm, gain in gains.items()}},
        }
    )
    check = mllm_highest_novelty(experiment)
    assert check.status == HOLDS and EXPLORATION_NOVEL not in check.evidence

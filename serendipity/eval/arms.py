"""The experiment's arms: the paper's production baselines rebuilt on the same SASRec + index, and the
system itself through ``Recommender.recommend_many`` exactly as the Serve app answers.

``ARMS`` are the paper's four: exploitation, exploration (the sequence model's query weighted toward the
context item, no novelty filter), the neural linear bandit and the MLLM. ``EXTRA_ARMS`` are diagnostics
that run only when ``eval.extra_arms`` names them: ``exploration_novel`` is the exploration query with
the user's engaged clusters removed (novel by construction, so never a baseline for a novelty claim).
Every arm excludes the items the user has seen (stored recent items + in-simulation engagement) and the
context item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from serendipity.config import EvalConfig
from serendipity.eval.bandit import NO_CLUSTER, NeuralLinearBandit
from serendipity.retrieval.recommend import RecommendedItem, Recommender

EXPLOITATION = "exploitation"
EXPLORATION = "exploration"
BANDIT = "bandit"
MLLM = "mllm"
EXPLORATION_NOVEL = "exploration_novel"
ARMS = (EXPLOITATION, EXPLORATION, BANDIT, MLLM)
EXTRA_ARMS = (EXPLORATION_NOVEL,)
THOMPSON_STREAM = 2


@dataclass(frozen=True)
class SlateRequest:
    user_id: int
    context_item_id: int
    history: list[int]  # in-simulation engaged items, oldest first
    stored: list[int]  # the user's pre-experiment recent items (the user_history feature), oldest first
    engaged_clusters: frozenset[int]  # level-L clusters engaged before or during the simulation
    rng_key: tuple[int, ...] = ()  # seeds this request's random draws (the bandit's Thompson sample)

    @property
    def past(self) -> list[int]:
        return [*self.stored, *self.history]

    @property
    def seen(self) -> set[int]:
        return {*self.stored, *self.history, self.context_item_id}


@dataclass(frozen=True)
class Slate:
    items: list[RecommendedItem]
    source: str
    nominated_cluster: int | None = None
    features: np.ndarray | None = field(default=None, compare=False)  # the bandit's x, for its update


class Arm(Protocol):
    name: str

    def recommend(self, requests: Sequence[SlateRequest], k: int) -> list[Slate]: ...


def _sequences(recommender: Recommender, requests: Sequence[SlateRequest]) -> np.ndarray:
    """SASRec queries of (past + context) for every request, in one forward pass."""
    return recommender.query_vectors([[*r.past, r.context_item_id] for r in requests])


@dataclass
class ExploitationArm:
    """The sequence model's unrestricted top k from the user's history and the context item."""

    recommender: Recommender
    name: str = EXPLOITATION

    def recommend(self, requests: Sequence[SlateRequest], k: int) -> list[Slate]:
        queries = _sequences(self.recommender, requests)
        return [
            Slate(self.recommender.search(query, k, None, r.seen), EXPLOITATION)
            for r, query in zip(requests, queries, strict=True)
        ]


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


@dataclass
class ExplorationArm:
    """The paper's exploration baseline: the sequence model's query weighted toward the context item.

    query = w * unit(context item's vector) + (1 - w) * unit(SASRec query of past + context), with
    ``w = context_weight`` (``eval.exploration_context_weight``); the top k of the whole index by inner
    product, minus seen items. No cluster filter: the user's engaged clusters stay eligible. A context
    item outside the vocabulary leaves the sequence query alone.
    """

    recommender: Recommender
    context_weight: float = 0.8
    name: str = EXPLORATION

    def queries(self, requests: Sequence[SlateRequest]) -> np.ndarray:
        sequence = _unit(_sequences(self.recommender, requests))
        contexts = [r.context_item_id for r in requests]
        known = np.array([c in self.recommender.vocabulary for c in contexts], dtype=bool)[:, None]
        context = _unit(self.recommender.item_vectors_of(contexts))
        mixed = self.context_weight * context + (1 - self.context_weight) * sequence
        return np.where(known, mixed, sequence).astype(np.float32)

    def recommend(self, requests: Sequence[SlateRequest], k: int) -> list[Slate]:
        return [
            Slate(self.recommender.search(query, k, None, r.seen), self.name)
            for r, query in zip(requests, self.queries(requests), strict=True)
        ]


@dataclass
class NovelExplorationArm(ExplorationArm):
    """A diagnostic, not the paper's baseline (the arm called "exploration" before the paper's was built):
    the context item's own neighbours (``context_weight`` 1.0 by default) outside the user's engaged
    clusters and the context item's cluster; when every cluster is blocked, unrestricted neighbours."""

    context_weight: float = 1.0
    name: str = EXPLORATION_NOVEL

    def _outside(self, query: np.ndarray, k: int, seen: set[int], blocked: set[int]) -> list[RecommendedItem]:
        total = len(self.recommender.index)
        depth = 4 * (k + len(seen))
        while True:
            found = self.recommender.search(query, min(depth, total), None, seen)
            kept = [item for item in found if item.cluster_id not in blocked]
            if len(kept) >= k or depth >= total:
                return kept[:k]
            depth *= 2

    def recommend(self, requests: Sequence[SlateRequest], k: int) -> list[Slate]:
        slates = []
        for request, query in zip(requests, self.queries(requests), strict=True):
            context_cluster = self.recommender.cluster_of(request.context_item_id)
            blocked = {*request.engaged_clusters, context_cluster} - {None}
            if set(self.recommender.cluster_ids) <= blocked:
                blocked = set()
            slates.append(Slate(self._outside(query, k, request.seen, blocked), self.name))
        return slates


@dataclass
class BanditArm:
    """Thompson sampling over the user's novel clusters (neural linear bandit), then the sequence
    model's top k inside the chosen cluster. The posterior is replaced between simulated days."""

    recommender: Recommender
    bandit: NeuralLinearBandit | None = None
    name: str = BANDIT

    def recommend(self, requests: Sequence[SlateRequest], k: int) -> list[Slate]:
        if self.bandit is None:
            raise RuntimeError("the bandit arm has no posterior yet; set .bandit before recommending")
        queries = _sequences(self.recommender, requests)
        contexts = self.recommender.item_vectors_of([r.context_item_id for r in requests])
        features = self.bandit.features(contexts, queries)
        blocked = [
            {*r.engaged_clusters, self.recommender.cluster_of(r.context_item_id)} - {None} for r in requests
        ]
        allowed = self.bandit.allowed_mask(blocked)
        everything_but_context = self.bandit.allowed_mask(
            [{self.recommender.cluster_of(r.context_item_id)} - {None} for r in requests]
        )
        allowed = np.where(allowed.any(axis=1, keepdims=True), allowed, everything_but_context)
        rngs = [np.random.default_rng([*r.rng_key, THOMPSON_STREAM]) for r in requests]
        chosen = self.bandit.choose(features, allowed, rngs)
        slates = []
        for request, query, cluster, x in zip(requests, queries, chosen, features, strict=True):
            cluster_id = (
                int(cluster) if cluster != NO_CLUSTER and int(cluster) in self.recommender.index else None
            )
            items = self.recommender.search(query, k, cluster_id, request.seen)
            slates.append(Slate(items, BANDIT, cluster_id, x))
        return slates


@dataclass
class MllmArm:
    """The system: Feast online read of serendipitous_cluster -> restricted SASRec search."""

    recommender: Recommender
    name: str = MLLM

    def recommend(self, requests: Sequence[SlateRequest], k: int) -> list[Slate]:
        answers = self.recommender.recommend_many(
            [(r.user_id, r.context_item_id, k, list(r.history)) for r in requests]
        )
        return [Slate(answer.items, answer.source, answer.cluster_id) for answer in answers]


def arm_names(settings: EvalConfig) -> tuple[str, ...]:
    """The arms an experiment runs: the paper's four, then the diagnostics ``eval.extra_arms`` names."""
    return (*ARMS, *(arm for arm in EXTRA_ARMS if arm in settings.extra_arms))


def build_arms(recommender: Recommender, settings: EvalConfig) -> dict[str, Arm]:
    """Every arm of ``arm_names(settings)``, in that order."""
    weight = settings.exploration_context_weight
    arms: dict[str, Arm] = {
        EXPLOITATION: ExploitationArm(recommender),
        EXPLORATION: ExplorationArm(recommender, weight),
        BANDIT: BanditArm(recommender),
        MLLM: MllmArm(recommender),
        EXPLORATION_NOVEL: NovelExplorationArm(recommender),
    }
    return {name: arms[name] for name in arm_names(settings)}

"""The one implementation of online recommendation, shared by the Ray Serve app and the evaluation.

Feature read (serving FeatureService) -> serendipitous_cluster(context item) + the user's recent items
-> SASRec query vector -> search inside that cluster -> drop seen items -> top k. Fallbacks:
no feature for the context item: unrestricted sequence-model results ("fallback"); a user with no
history anywhere: neighbours of the context item ("neighbours"), or, with ``cold_start`` on (serving),
its serendipitous cluster queried with the context item alone (marked ``cold_start``); feature store
failing, hanging past ``feature_timeout_s`` or holding no data: the "fallback" path with
``degraded=True`` and a rate-limited warning, never an exception.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from datetime import datetime
from itertools import islice
from typing import Any

import numpy as np
import pandas as pd
import torch

from serendipity.config import PipelineConfig
from serendipity.layout import WorkLayout
from serendipity.retrieval.answers import RecommendArgs, Recommendation, RecommendedItem
from serendipity.retrieval.data import ItemVocabulary, pad_left
from serendipity.retrieval.deadline import FeatureReader, GuardedFeatureReads, RateLimitedWarning
from serendipity.retrieval.index import ClusterIndex
from serendipity.retrieval.model import SASRec
from serendipity.schema import (
    REASONING_FEATURE,
    RECENT_ITEMS_FEATURE,
    SERENDIPITOUS_CLUSTER_FEATURE,
    SERENDIPITOUS_DESCRIPTION_FEATURE,
)
from serendipity.tree import ClusterTree

log = logging.getLogger(__name__)


def _present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    return value is not pd.NA


def _id_list(value: Any) -> list[int]:
    return [int(v) for v in value] if _present(value) and not isinstance(value, str) else []


class Recommender:
    """Online recommendation over an already loaded model, index, feature reader and cluster tree."""

    def __init__(
        self,
        model: SASRec,
        index: ClusterIndex,
        features: FeatureReader | None,
        tree: ClusterTree,
        *,
        vocabulary: ItemVocabulary,
        popularity: np.ndarray | None = None,
        max_k: int = 100,
        clock: Callable[[], datetime] | None = None,
        feature_timeout_s: float | None = None,
        degraded_log_interval_s: float = 0.0,
        cold_start: bool = False,
    ) -> None:
        """``features=None`` means the store could not be opened: every answer is degraded.

        ``clock`` gives the serving time for feature TTLs (None: the wall clock); a simulation sets it.
        ``feature_timeout_s`` bounds one store read (None: unbounded); a read past it answers degraded
        while the read itself finishes, or not, on a worker thread of its own. ``cold_start``: a user
        without history on a context item with a feature explores that feature's cluster.
        """
        self.model = model.eval()
        self.index = index
        self.features = features
        self.tree = tree
        self.vocabulary = vocabulary
        self.max_k = max_k
        self.clock = clock
        self.cold_start = cold_start
        self.store_holds_features = True  # set by whoever checks the store (the serving deployment)
        self._reads = GuardedFeatureReads(feature_timeout_s, RateLimitedWarning(log, degraded_log_interval_s))
        self._item_vectors = model.item_vectors().detach().numpy()
        self._item_cluster = dict(
            zip(vocabulary.item_ids.tolist(), vocabulary.cluster_ids.tolist(), strict=True)
        )
        counts = popularity[1:] if popularity is not None else np.zeros(len(vocabulary))
        self._popular_item_ids = vocabulary.item_ids[np.argsort(-counts, kind="stable")]

    @classmethod
    def load(
        cls,
        config: PipelineConfig,
        feature_store_yaml: str | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        feature_timeout_s: float | None = None,
        cold_start: bool = False,
    ) -> Recommender:
        """The published retriever of ``config`` and its Feast store (degraded when it will not open)."""
        from serendipity.feature_store import ServingFeatures
        from serendipity.retrieval.artifacts import Retriever

        layout = WorkLayout.of(config)
        retriever = Retriever.load(layout.retriever_dir)
        tree = ClusterTree.load(layout.described_tree_source())
        try:
            features: FeatureReader | None = ServingFeatures(config, feature_store_yaml)
        except Exception as error:  # noqa: BLE001 - serving goes on degraded rather than not at all
            log.warning("feature store unavailable, serving degraded: %s: %s", type(error).__name__, error)
            features = None
        return cls(
            retriever.model,
            retriever.index,
            features,
            tree,
            vocabulary=retriever.vocabulary,
            popularity=retriever.popularity,
            max_k=config.serving.max_k,
            clock=clock,
            feature_timeout_s=feature_timeout_s,
            degraded_log_interval_s=config.serving.degraded_log_interval_s,
            cold_start=cold_start,
        )

    def observe_feature_reads(self, observe: Callable[[float | None, str], None]) -> None:
        """Have ``observe(seconds, outcome)`` called after each feature read (seconds None when no read
        was made; outcome ok, timeout, saturated, error or closed): serving records it as metrics."""
        self._reads.observe = observe

    def _read_features(
        self, user_ids: Sequence[int], context_item_ids: Sequence[int]
    ) -> tuple[list[dict[str, Any]], bool]:
        """(feature values per request, degraded) from ONE store read; a failing store gives no values."""
        now = self.clock() if self.clock else None
        return self._reads.rows(self.features, user_ids, context_item_ids, now, self.store_holds_features)

    # --- building blocks, shared with the evaluation's baseline arms -----------------------------
    def query_vectors(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """SASRec query vectors (n, dim) of item-id sequences (oldest first), in ONE forward pass.

        Items outside the vocabulary are skipped; an empty sequence gives the query of an all-padding input.
        """
        length = self.model.config.max_length
        rows = []
        for sequence in sequences:
            indices = self.vocabulary.indices(list(sequence))
            rows.append(indices[indices > 0])
        if not rows:
            return np.zeros((0, self.index.dim), dtype=np.float32)
        with torch.inference_mode():
            return self.model.query(torch.from_numpy(pad_left(rows, length))).numpy()

    def item_vector(self, item_id: int) -> np.ndarray:
        """The SASRec embedding of a catalogue item (KeyError for an unknown item)."""
        if int(item_id) not in self.vocabulary:
            raise KeyError(f"item {item_id} is not in the retriever's vocabulary")
        return self._item_vectors[self.vocabulary.indices([int(item_id)])[0] - 1]

    def item_vectors_of(self, item_ids: Sequence[int]) -> np.ndarray:
        """Embeddings (n, dim) of catalogue items; unknown items get zero vectors."""
        indices = self.vocabulary.indices(list(item_ids))
        vectors = np.zeros((len(indices), self.index.dim), dtype=self._item_vectors.dtype)
        known = indices > 0
        vectors[known] = self._item_vectors[indices[known] - 1]
        return vectors

    def cluster_of(self, item_id: int) -> int | None:
        """The level-L cluster of an item, None when the retriever does not know it."""
        cluster = self._item_cluster.get(int(item_id))
        return None if cluster is None else int(cluster)

    @property
    def cluster_ids(self) -> list[int]:
        """Level-L clusters with items in the index."""
        return self.index.cluster_ids

    def search(
        self, query: np.ndarray, k: int, cluster_id: int | None = None, seen: Collection[int] = ()
    ) -> list[RecommendedItem]:
        """Top ``k`` items by inner product with ``query`` (inside ``cluster_id`` if given) minus ``seen``."""
        return self._top(query, k, cluster_id, set(seen))

    def _top(
        self, query: np.ndarray, k: int, cluster_id: int | None, seen: set[int]
    ) -> list[RecommendedItem]:
        item_ids, scores = self.index.search(query, k + len(seen), cluster_id)
        kept = [(int(i), float(s)) for i, s in zip(item_ids, scores, strict=True) if int(i) not in seen]
        return [RecommendedItem(i, s, int(self._item_cluster[i])) for i, s in kept[:k]]

    def _popular(self, k: int, seen: set[int]) -> list[RecommendedItem]:
        chosen = list(islice((int(i) for i in self._popular_item_ids if int(i) not in seen), k))
        return [RecommendedItem(i, 0.0, int(self._item_cluster[i])) for i in chosen]

    # --- online recommendation ------------------------------------------------------------------
    def recommend(
        self, user_id: int, context_item_id: int, k: int, history: list[int] | None = None
    ) -> Recommendation:
        """Top ``k`` items for a user watching ``context_item_id``.

        ``history`` (item ids, oldest first) extends the user's stored recent items; it and the context
        item are never recommended.
        """
        return self.recommend_many([RecommendArgs(user_id, context_item_id, k, history)])[0]

    def popular_items(self, k: int) -> list[RecommendedItem]:
        """The ``k`` most popular catalogue items (what a fallback without any feature can offer)."""
        return self._popular(k, set())

    def recommend_many(self, requests: Sequence[RecommendArgs]) -> list[Recommendation]:
        """``recommend`` of each (user_id, context_item_id, k, history) request, answered together.

        One feature-store read and one SASRec forward pass serve the whole batch; the answers equal
        those of calling ``recommend`` one request at a time.
        """
        for position, (_, _, k, _) in enumerate(requests):
            if not 1 <= k <= self.max_k:
                raise ValueError(
                    f"request {position}: k must be between 1 and serving.max_k={self.max_k}, got {k}"
                )
        if not requests:
            return []
        rows, degraded = self._read_features(
            [int(user) for user, _, _, _ in requests], [int(item) for _, item, _, _ in requests]
        )
        answers: list[Recommendation | None] = [None] * len(requests)
        pending: list[tuple[int, list[int], set[int]]] = []  # (position, sequence, seen)
        cold_starts: set[int] = set()
        for position, ((_, context_item_id, k, history), row) in enumerate(zip(requests, rows, strict=True)):
            stored = list(reversed(_id_list(row.get(RECENT_ITEMS_FEATURE))))  # the feature is newest first
            past = [*stored, *(int(i) for i in history or [])]
            seen = {*past, int(context_item_id)}
            known_past = [i for i in past if i in self.vocabulary]
            context_known = int(context_item_id) in self.vocabulary
            if not known_past and not degraded:
                if not context_known:
                    answers[position] = Recommendation(self._popular(k, seen), "fallback", None, None, None)
                elif self.cold_start and self._feature_cluster(row) is not None:
                    cold_starts.add(position)
                    pending.append((position, [int(context_item_id)], seen))
                else:
                    vector = self.item_vector(int(context_item_id))
                    answers[position] = Recommendation(
                        self._top(vector, k, None, seen), "neighbours", None, None, None
                    )
                continue
            sequence = [*known_past, int(context_item_id)] if context_known else known_past
            if not sequence:  # degraded, with neither history nor a known context item
                answers[position] = Recommendation(
                    self._popular(k, seen), "fallback", None, None, None, degraded=True
                )
                continue
            pending.append((position, sequence, seen))

        queries = self.query_vectors([sequence for _, sequence, _ in pending])
        for (position, _, seen), query in zip(pending, queries, strict=True):
            answer = self._restricted(query, requests[position][2], seen, rows[position], degraded)
            answers[position] = replace(answer, cold_start=position in cold_starts)
        return [answer for answer in answers if answer is not None]

    def _feature_cluster(self, row: dict[str, Any]) -> int | None:
        """The row's serendipitous cluster when the index has items in it."""
        cluster = row.get(SERENDIPITOUS_CLUSTER_FEATURE)
        return int(cluster) if _present(cluster) and int(cluster) in self.index else None

    def _restricted(
        self, query: np.ndarray, k: int, seen: set[int], row: dict[str, Any], degraded: bool
    ) -> Recommendation:
        """Search inside the feature's serendipitous cluster, or unrestricted when there is none."""
        cluster_id = self._feature_cluster(row)
        if cluster_id is not None:
            description = row.get(SERENDIPITOUS_DESCRIPTION_FEATURE)
            if not _present(description):
                description = self.tree.description(cluster_id) if cluster_id in self.tree else None
            reasoning = row.get(REASONING_FEATURE)
            return Recommendation(
                self._top(query, k, cluster_id, seen),
                "serendipity",
                cluster_id,
                description,
                (reasoning or None) if _present(reasoning) else None,
                degraded,
            )
        return Recommendation(self._top(query, k, None, seen), "fallback", None, None, None, degraded)

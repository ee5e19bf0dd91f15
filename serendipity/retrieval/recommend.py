"""The one implementation of online recommendation, shared by the Ray Serve app and the evaluation.

Feature read (serving FeatureService) -> serendipitous_cluster(context item) + the user's recent items
-> SASRec query vector -> search inside that cluster -> drop seen items -> top k. Fallbacks:
no feature for the context item: unrestricted sequence-model results ("fallback"); a user with no
history anywhere: neighbours of the context item ("neighbours"); feature store failing: the "fallback"
path with ``degraded=True`` and a logged warning, never an exception.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
import torch

from serendipity.config import PipelineConfig
from serendipity.layout import WorkLayout
from serendipity.retrieval.data import ItemVocabulary, pad_left
from serendipity.retrieval.index import ClusterIndex
from serendipity.retrieval.model import SASRec
from serendipity.schema import RECENT_ITEMS_FEATURE, SERENDIPITOUS_CLUSTER_FEATURE
from serendipity.tree import ClusterTree

log = logging.getLogger(__name__)
Source = Literal["serendipity", "fallback", "neighbours"]
DESCRIPTION_FEATURE = "serendipitous_description"
REASONING_FEATURE = "reasoning"


@dataclass(frozen=True)
class RecommendedItem:
    item_id: int
    score: float
    cluster_id: int


@dataclass(frozen=True)
class Recommendation:
    items: list[RecommendedItem]
    source: Source
    cluster_id: int | None
    cluster_description: str | None
    reasoning: str | None
    degraded: bool = False


class FeatureReader(Protocol):
    """What the recommender needs of the feature store (``serendipity.features_store.ServingFeatures``)."""

    def online_features(
        self, item_ids: Sequence[int], user_ids: Sequence[int], now: datetime | None = None
    ) -> pd.DataFrame: ...


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
    ) -> None:
        """``features=None`` means the store could not be opened: every answer is degraded.

        ``clock`` gives the serving time for feature TTLs (None: the wall clock); a simulation sets it.
        """
        self.model = model.eval()
        self.index = index
        self.features = features
        self.tree = tree
        self.vocabulary = vocabulary
        self.max_k = max_k
        self.clock = clock
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
    ) -> Recommender:
        """The published retriever of ``config`` and its Feast store (degraded when it will not open)."""
        from serendipity.features_store import ServingFeatures
        from serendipity.retrieval.artifacts import Retriever

        layout = WorkLayout.of(config)
        retriever = Retriever.load(layout.retriever_dir)
        curated = layout.descriptions_path
        tree = ClusterTree.load(curated if curated.exists() else layout.catalog_dir())
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
        )

    def _read_features(self, user_id: int, context_item_id: int) -> tuple[dict[str, Any], bool]:
        """(feature values, degraded); a failing store gives no values and degraded=True."""
        if self.features is None:
            return {}, True
        try:
            now = self.clock() if self.clock else None
            frame = self.features.online_features([context_item_id], [user_id], now=now)
            return frame.iloc[0].to_dict(), False
        except Exception as error:  # noqa: BLE001 - any store failure degrades, never fails the request
            log.warning("feature read failed, serving the fallback: %s: %s", type(error).__name__, error)
            return {}, True

    def _query(self, sequence: list[int]) -> np.ndarray:
        indices = self.vocabulary.indices(sequence)
        padded = pad_left([indices[indices > 0]], self.model.config.max_length)
        with torch.inference_mode():
            return self.model.query(torch.from_numpy(padded))[0].numpy()

    def _top(
        self, query: np.ndarray, k: int, cluster_id: int | None, seen: set[int]
    ) -> list[RecommendedItem]:
        item_ids, scores = self.index.search(query, k + len(seen), cluster_id)
        kept = [(int(i), float(s)) for i, s in zip(item_ids, scores, strict=True) if int(i) not in seen]
        return [RecommendedItem(i, s, int(self._item_cluster[i])) for i, s in kept[:k]]

    def _popular(self, k: int, seen: set[int]) -> list[RecommendedItem]:
        chosen = [int(i) for i in self._popular_item_ids if int(i) not in seen][:k]
        return [RecommendedItem(i, 0.0, int(self._item_cluster[i])) for i in chosen]

    def recommend(
        self, user_id: int, context_item_id: int, k: int, history: list[int] | None = None
    ) -> Recommendation:
        """Top ``k`` items for a user watching ``context_item_id``.

        ``history`` (item ids, oldest first) extends the user's stored recent items; it and the context
        item are never recommended.
        """
        if not 1 <= k <= self.max_k:
            raise ValueError(f"k must be between 1 and serving.max_k={self.max_k}, got {k}")
        row, degraded = self._read_features(int(user_id), int(context_item_id))
        stored = list(reversed(_id_list(row.get(RECENT_ITEMS_FEATURE))))  # the feature is newest first
        past = [*stored, *(int(i) for i in history or [])]
        seen = {*past, int(context_item_id)}
        known_past = [i for i in past if i in self.vocabulary]
        context_known = int(context_item_id) in self.vocabulary

        if not known_past and not degraded:
            if not context_known:
                return Recommendation(self._popular(k, seen), "fallback", None, None, None)
            vector = self._item_vectors[self.vocabulary.indices([context_item_id])[0] - 1]
            return Recommendation(self._top(vector, k, None, seen), "neighbours", None, None, None)

        sequence = [*known_past, int(context_item_id)] if context_known else known_past
        if not sequence:  # degraded, with neither history nor a known context item
            return Recommendation(self._popular(k, seen), "fallback", None, None, None, degraded=True)
        query = self._query(sequence)
        cluster = row.get(SERENDIPITOUS_CLUSTER_FEATURE)
        if _present(cluster) and int(cluster) in self.index:
            cluster_id = int(cluster)
            description = row.get(DESCRIPTION_FEATURE)
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

"""UserSimulator: the world's hidden satisfaction rules as a reusable, vectorised object.

The rules are documented in :mod:`serendipity.world.rules`. The generator saves the hidden state
under ``DATASET/_world/`` (not part of the data contract) and :meth:`UserSimulator.load` reads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from serendipity.world.rules import WorldRules

TRUTH_DIR = "_world"
ITEMS_TRUTH_FILE = "items_truth.parquet"
USERS_TRUTH_FILE = "users_truth.parquet"
RULES_FILE = "rules.json"


class Relation(IntEnum):
    """How a next item relates to its context item (mining level L = 3)."""

    NO_CONTEXT = 0
    SIMILAR = 1
    SERENDIPITOUS_CUE = 2
    SERENDIPITOUS_OTHER = 3
    FAR = 4


def _index_of(known: np.ndarray, ids: np.ndarray, what: str) -> np.ndarray:
    """Positions of ``ids`` in the sorted array ``known``; unknown ids are an error naming them."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(known) and known[-1] - known[0] == len(known) - 1:  # contiguous ids: direct offsets
        position = np.clip(ids - known[0], 0, len(known) - 1)
    else:
        position = np.clip(np.searchsorted(known, ids), 0, len(known) - 1)
    unknown = known[position] != ids
    if unknown.any():
        raise ValueError(f"unknown {what} ids (first few): {np.unique(ids[unknown])[:10].tolist()}")
    return position


@dataclass
class UserSimulator:
    """Hidden per-item and per-user state plus the rules. Ids are global (as in the dataset tables)."""

    rules: WorldRules
    items: pa.Table  # items_truth: item_id (sorted), c1, c2, c3, cue_cluster, visual_richness, quality, ...
    users: pa.Table  # users_truth: user_id (sorted), openness, favourite_l1, favourite_l2, favourite_weight

    def __post_init__(self) -> None:
        self._item_ids = self.items.column("item_id").to_numpy()
        self._c1 = self.items.column("c1").to_numpy()
        self._c2 = self.items.column("c2").to_numpy()
        self._c3 = self.items.column("c3").to_numpy()
        self._cue = self.items.column("cue_cluster").to_numpy()
        self._richness = self.items.column("visual_richness").to_numpy()
        self._quality = self.items.column("quality").to_numpy()
        self._user_ids = self.users.column("user_id").to_numpy()
        self._openness = self.users.column("openness").to_numpy()
        self._fav_l1 = np.stack(self.users.column("favourite_l1").to_numpy(zero_copy_only=False))
        self._fav_l2 = np.stack(self.users.column("favourite_l2").to_numpy(zero_copy_only=False))
        self._fav_weight = np.stack(self.users.column("favourite_weight").to_numpy(zero_copy_only=False))
        same_l1 = self._fav_l1[:, :, None] == self._fav_l1[:, None, :]
        self._max_l2_weight = self._fav_weight.max(axis=1)
        self._max_l1_weight = (same_l1 * self._fav_weight[:, None, :]).sum(axis=2).max(axis=1)

    # --- persistence ------------------------------------------------------------------------
    @classmethod
    def load(cls, dataset_dir: str | Path) -> UserSimulator:
        truth = Path(dataset_dir) / TRUTH_DIR
        missing = [
            name for name in (ITEMS_TRUTH_FILE, USERS_TRUTH_FILE, RULES_FILE) if not (truth / name).is_file()
        ]
        if missing:
            raise FileNotFoundError(
                f"{truth}: hidden world state missing ({', '.join(missing)}); was this dataset made by "
                "`serendipity world generate`?"
            )
        rules = WorldRules.from_json(json.loads((truth / RULES_FILE).read_text())["rules"])
        items = pq.read_table(truth / ITEMS_TRUTH_FILE).sort_by("item_id")
        users = pq.read_table(truth / USERS_TRUTH_FILE).sort_by("user_id")
        return cls(rules, items, users)

    # --- hidden state -----------------------------------------------------------------------
    def cue_cluster(self, item_ids: np.ndarray) -> np.ndarray:
        """The hidden serendipitous target cluster (level 3) of each item."""
        return self._cue[_index_of(self._item_ids, item_ids, "item")]

    def visual_richness(self, item_ids: np.ndarray) -> np.ndarray:
        """The latent "visually interesting" score in [0, 1] of each item."""
        return self._richness[_index_of(self._item_ids, item_ids, "item")]

    def openness(self, user_ids: np.ndarray) -> np.ndarray:
        return self._openness[_index_of(self._user_ids, user_ids, "user")]

    def affinity(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """Interest of each user in each item's topic, in [0, 1]."""
        users = _index_of(self._user_ids, user_ids, "user")
        items = _index_of(self._item_ids, item_ids, "item")
        weight = self._fav_weight[users]
        l2_match = (weight * (self._fav_l2[users] == self._c2[items][:, None])).sum(axis=1)
        l1_match = (weight * (self._fav_l1[users] == self._c1[items][:, None])).sum(axis=1)
        share = self.rules.l2_affinity_weight
        return (
            share * l2_match / self._max_l2_weight[users]
            + (1 - share) * l1_match / self._max_l1_weight[users]
        )

    def relation(self, item_ids: np.ndarray, context_item_ids: np.ndarray | None) -> np.ndarray:
        """The :class:`Relation` code of each (context, next item) pair; context -1 means none."""
        items = _index_of(self._item_ids, item_ids, "item")
        result = np.full(len(items), Relation.NO_CONTEXT, dtype=np.int8)
        if context_item_ids is None:
            return result
        context_ids = np.asarray(context_item_ids, dtype=np.int64)
        has_context = context_ids >= 0
        contexts = np.zeros(len(items), dtype=np.int64)
        contexts[has_context] = _index_of(self._item_ids, context_ids[has_context], "context item")
        same_l3 = self._c3[items] == self._c3[contexts]
        same_l2 = self._c2[items] == self._c2[contexts]
        cue_match = self._c3[items] == self._cue[contexts]
        coded = np.select(
            [same_l3, same_l2 & cue_match, same_l2],
            [Relation.SIMILAR, Relation.SERENDIPITOUS_CUE, Relation.SERENDIPITOUS_OTHER],
            Relation.FAR,
        )
        result[has_context] = coded[has_context]
        return result

    # --- satisfaction -----------------------------------------------------------------------
    def expected_satisfaction(
        self, user_ids: np.ndarray, item_ids: np.ndarray, context_item_ids: np.ndarray | None = None
    ) -> np.ndarray:
        """Mean satisfaction m of each (user, item, context) triple under the hidden rules."""
        rules = self.rules
        user_ids = np.asarray(user_ids, dtype=np.int64)
        item_ids = np.asarray(item_ids, dtype=np.int64)
        if user_ids.shape != item_ids.shape:
            raise ValueError(f"user_ids {user_ids.shape} and item_ids {item_ids.shape} differ in shape")
        items = _index_of(self._item_ids, item_ids, "item")
        openness = self.openness(user_ids)
        relation = self.relation(item_ids, context_item_ids)
        context_richness = np.zeros(len(items))
        if context_item_ids is not None:
            context_ids = np.asarray(context_item_ids, dtype=np.int64)
            has_context = context_ids >= 0
            context_richness[has_context] = self.visual_richness(context_ids[has_context])
        cue_strength = rules.cue_richness_floor + (1 - rules.cue_richness_floor) * context_richness
        bonus = np.select(
            [
                relation == Relation.SIMILAR,
                relation == Relation.SERENDIPITOUS_CUE,
                relation == Relation.SERENDIPITOUS_OTHER,
                relation == Relation.FAR,
            ],
            [
                rules.similar_bonus * (1 - openness),
                rules.cue_bonus * cue_strength * openness,
                np.full(len(items), rules.other_sibling_bonus),
                np.full(len(items), rules.far_jump_bonus),
            ],
            0.0,
        )
        mean = (
            rules.base
            + rules.quality_weight * (self._quality[items] - 0.5)
            + rules.affinity_weight * self.affinity(user_ids, item_ids)
            + bonus
        )
        return np.clip(mean, rules.mean_min, rules.mean_max)

    def satisfaction(
        self,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        context_item_ids: np.ndarray | None,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Satisfaction draws in [0, 1]: Beta around :meth:`expected_satisfaction`."""
        mean = self.expected_satisfaction(user_ids, item_ids, context_item_ids)
        concentration = self.rules.satisfaction_concentration
        return rng.beta(mean * concentration, (1 - mean) * concentration)

"""What the explorer page shows about items and clusters: the catalogue, the tree and the model's answers.

Everything comes from the work directory of one pipeline config: the validated (or tree-built) items
table, the described cluster tree and the batch-inference output (one answer per context item, with its
alternatives and their scores). Read once, then answered from memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from serendipity.config import PipelineConfig
from serendipity.io import parquet_schema
from serendipity.layout import WorkLayout
from serendipity.mllm.gate import NON_LLM_GUESS_VERSION, TRANSITION_PRIOR_VERSION
from serendipity.schema import (
    ALTERNATIVE_SCORES_COLUMN,
    ALTERNATIVES_FEATURE,
    ITEM_JOIN_KEY,
    ITEMS_FILE,
    LEVEL_COLUMNS,
    MEDIA_FALLBACK_COLUMN,
    MODEL_VERSION_FEATURE,
    PROMPT_STYLE_COLUMN,
    REASONING_FEATURE,
    SERENDIPITOUS_CLUSTER_FEATURE,
    SERENDIPITY_SCORE_FEATURE,
    level_column,
)
from serendipity.tree import ClusterTree

ITEM_COLUMNS = ("item_id", "title", "thumbnail_path", "video_path", *LEVEL_COLUMNS)
MODEL = "model"
NON_LLM_GUESS = "non-LLM guess"
TRANSITION_PRIOR = "transition prior"


def answer_origin(model_version: str) -> str:
    """Who nominated a served cluster: the model, or a reference the publish gate chose instead."""
    if model_version == NON_LLM_GUESS_VERSION:
        return NON_LLM_GUESS
    return TRANSITION_PRIOR if model_version.startswith(TRANSITION_PRIOR_VERSION) else MODEL


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return str(value) or None


def _number(value: Any) -> float | None:
    """A JSON-safe float: None for a missing or NaN value."""
    if value is None or value is pd.NA:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _values(array: Any) -> list[Any]:
    """A list column's value (an array, or None) as a list."""
    return [] if array is None or isinstance(array, float) else list(array)


@dataclass(frozen=True)
class ExplorerCatalog:
    items: pd.DataFrame  # indexed by item_id: title, media paths (validated, relative), c1..c4
    tree: ClusterTree
    answers: pd.DataFrame  # batch-inference output indexed by item_id
    level: int  # the tree level the model nominates and the index searches (mining.level)

    def __post_init__(self) -> None:
        # pandas fills an index's lookup table on first use, and not thread-safely: fill it now, before
        # the explorer's worker threads read the catalogue at the same time
        for frame in (self.items, self.answers):
            if len(frame.index):
                frame.index.get_loc(frame.index[0])

    @classmethod
    def load(cls, config: PipelineConfig) -> ExplorerCatalog:
        layout = WorkLayout.of(config)
        path = layout.catalog_dir() / ITEMS_FILE
        present = [column for column in ITEM_COLUMNS if column in parquet_schema(path).names]
        items = pq.read_table(path, columns=present).to_pandas().set_index("item_id", drop=False)
        answers = pd.read_parquet(layout.serendipity_path) if layout.serendipity_path.exists() else None
        if answers is None:
            answers = pd.DataFrame({ITEM_JOIN_KEY: pd.Series(dtype="int64")})
        return cls(
            items.sort_index(),
            ClusterTree.load(layout.described_tree_source()),
            answers.set_index(ITEM_JOIN_KEY, drop=False),
            config.mining.level,
        )

    # --- items ----------------------------------------------------------------------------------
    def __contains__(self, item_id: object) -> bool:
        return item_id in self.items.index

    def media_path(self, item_id: int, column: str) -> str | None:
        """The validated relative path in an item's ``thumbnail_path`` or ``video_path`` (None: unusable)."""
        if item_id not in self.items.index or column not in self.items.columns:
            return None
        return _text(self.items.at[item_id, column])

    def item_row(self, item_id: int) -> dict[str, Any]:
        return self.items.loc[item_id].to_dict()

    def cluster_of(self, item_id: int) -> int:
        return int(self.items.at[item_id, level_column(self.level)])

    def item_summary(self, item_id: int) -> dict[str, Any]:
        """Id, title, level-L cluster and whether it has a thumbnail: one tile of a slate or a cluster."""
        cluster_id = self.cluster_of(item_id)
        return {
            "item_id": int(item_id),
            "title": str(self.items.at[item_id, "title"]),
            "cluster_id": cluster_id,
            "cluster_description": self._description(cluster_id),
            "has_thumbnail": self.media_path(item_id, "thumbnail_path") is not None,
        }

    def item_detail(self, item_id: int) -> dict[str, Any]:
        """The summary plus the cluster path from level 1 down to the item's level-L cluster."""
        return {
            **self.item_summary(item_id),
            "cluster_path": [self.cluster_brief(c) for c in self.tree.path(self.cluster_of(item_id))],
            "has_video": self.media_path(item_id, "video_path") is not None,
        }

    def search(self, query: str, limit: int) -> list[dict[str, Any]]:
        """Items whose id equals ``query`` or whose title contains it (case-insensitive), id order."""
        query = query.strip()
        if not query:
            return []
        # an id is ASCII digits ("²" and other Unicode digits pass isdigit, not int)
        as_id = int(query) if query.isascii() and query.isdecimal() and len(query) <= 19 else None
        exact = [as_id] if as_id is not None and as_id in self.items.index else []
        titles = self.items["title"].astype(str)
        matches = self.items.index[titles.str.contains(query, case=False, regex=False)]
        chosen = [*exact, *(int(i) for i in matches if int(i) not in exact)][:limit]
        return [self.item_summary(item_id) for item_id in chosen]

    # --- clusters -------------------------------------------------------------------------------
    def _description(self, cluster_id: int) -> str | None:
        return self.tree.description(cluster_id) if cluster_id in self.tree else None

    def cluster_brief(self, cluster_id: int) -> dict[str, Any]:
        return {
            "cluster_id": int(cluster_id),
            "level": self.tree.level(cluster_id),
            "description": self.tree.description(cluster_id),
        }

    def roots(self) -> list[dict[str, Any]]:
        return [self.cluster_brief(c) for c in self.tree.children(None)]

    def members(self, cluster_id: int) -> pd.Index:
        level = self.tree.level(cluster_id)
        return self.items.index[self.items[level_column(level)] == cluster_id]

    def cluster(self, cluster_id: int, member_count: int) -> dict[str, Any] | None:
        """A cluster: description, path, children, siblings and its first ``member_count`` member items."""
        if cluster_id not in self.tree:
            return None
        members = self.members(cluster_id)
        return {
            **self.cluster_brief(cluster_id),
            "path": [self.cluster_brief(c) for c in self.tree.path(cluster_id)],
            "children": [self.cluster_brief(c) for c in self.tree.children(cluster_id)],
            "siblings": [self.cluster_brief(c) for c in self.tree.siblings(cluster_id)],
            "member_count": len(members),
            "members": [self.item_summary(int(i)) for i in members[:member_count]],
        }

    # --- the model's answer -----------------------------------------------------------------------
    def answer(self, item_id: int) -> dict[str, Any] | None:
        """The stored answer for a context item: nominated cluster, alternatives with scores, reasoning."""
        if item_id not in self.answers.index:
            return None
        row = self.answers.loc[item_id]
        alternatives = _values(row.get(ALTERNATIVES_FEATURE))
        scores = _values(row.get(ALTERNATIVE_SCORES_COLUMN))
        scores += [None] * (len(alternatives) - len(scores))
        version = _text(row.get(MODEL_VERSION_FEATURE))
        cluster_id = int(row[SERENDIPITOUS_CLUSTER_FEATURE])
        return {
            "cluster_id": cluster_id,
            "description": self._description(cluster_id),
            "score": _number(row.get(SERENDIPITY_SCORE_FEATURE)),
            "alternatives": [
                {
                    "cluster_id": int(c),
                    "description": self._description(int(c)),
                    "score": _number(s),
                }
                for c, s in zip(alternatives, scores, strict=True)
            ],
            "reasoning": _text(row.get(REASONING_FEATURE)),
            "model_version": version,
            "prompt_style": _text(row.get(PROMPT_STYLE_COLUMN)),
            "media_fallback": bool(row.get(MEDIA_FALLBACK_COLUMN, False)),
            "origin": answer_origin(version),
        }

"""The world's 4-level topic tree: a regular tree named from word lists, e.g. "Cooking / Tutorials / Retro".

Clusters are numbered level by level (breadth first), so the ``j``-th cluster of level ``k`` has
local index ``j`` and parent ``j // branching[k-1]`` at level ``k-1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from serendipity.schema import CLUSTERS_SCHEMA, NUM_LEVELS

SEPARATOR = " / "

LEVEL_WORDS: tuple[tuple[str, ...], ...] = (
    (
        "Cooking", "Travel", "Music", "Sports", "Gaming", "Fitness", "Pets", "Science", "Fashion",
        "Comedy", "Art", "Cars", "Dance", "Gardening", "Tech", "History", "Nature", "Movies", "Books",
        "DIY", "Photography", "Beauty", "Finance", "Parenting",
    ),
    (
        "Basics", "Tutorials", "Challenges", "Reviews", "Vlogs", "Behind the Scenes", "Competitions",
        "Hacks", "Stories", "Experiments", "Trends", "Classics", "Live Sessions", "Interviews", "News",
        "Tours", "Crafts", "Masterclasses", "Bloopers", "Questions", "Collabs", "Setups", "Routines",
        "Debates",
    ),
    (
        "Street", "Retro", "Minimal", "Extreme", "Cozy", "Urban", "Rural", "Tropical", "Arctic", "Desert",
        "Coastal", "Vintage", "Futuristic", "Budget", "Luxury", "Family", "Solo", "Night", "Morning",
        "Festival", "Underground", "Handmade", "Seasonal", "Mountain",
    ),
    (
        "for Beginners", "Highlights", "Shorts", "Deep Dives", "Speedruns", "Compilations", "Timelapses",
        "Slow Motion", "Reactions", "Duets", "Remixes", "Marathons", "Montages", "Top Lists", "Myths",
        "Fails", "Wins", "Close-ups", "Walkthroughs", "Diaries", "Pranks", "Rankings", "Unboxings",
        "Showcases",
    ),
)  # fmt: skip


@dataclass(frozen=True)
class Taxonomy:
    """A regular 4-level tree; ``names[k][j]``: last description word of cluster ``j`` at level ``k+1``."""

    branching: tuple[int, int, int, int]
    names: tuple[tuple[str, ...], ...]

    def count(self, level: int) -> int:
        """Number of clusters at ``level`` (1-based)."""
        return int(np.prod(self.branching[:level]))

    def offset(self, level: int) -> int:
        """Global cluster id of the first cluster at ``level``."""
        return sum(self.count(k) for k in range(1, level))

    def cluster_ids(self, level: int, local: np.ndarray) -> np.ndarray:
        return self.offset(level) + np.asarray(local, dtype=np.int64)

    def parent_local(self, level: int, local: np.ndarray) -> np.ndarray:
        """Local index at ``level - 1`` of the parents of local clusters at ``level``."""
        return np.asarray(local, dtype=np.int64) // self.branching[level - 1]

    def sibling_index(self, level: int, local: np.ndarray) -> np.ndarray:
        """Index of each cluster among its parent's children."""
        return np.asarray(local, dtype=np.int64) % self.branching[level - 1]

    def ancestor_local(self, level: int, local: np.ndarray, target_level: int) -> np.ndarray:
        result = np.asarray(local, dtype=np.int64)
        for current in range(level, target_level, -1):
            result = self.parent_local(current, result)
        return result

    def descriptions(self, level: int) -> list[str]:
        """Full descriptions of every cluster at ``level``, in local order."""
        if level == 1:
            return list(self.names[0])
        parents = self.descriptions(level - 1)
        return [
            f"{parents[j // self.branching[level - 1]]}{SEPARATOR}{name}"
            for j, name in enumerate(self.names[level - 1])
        ]

    def clusters_table(self) -> pa.Table:
        ids, levels, parents, descriptions = [], [], [], []
        for level in range(1, NUM_LEVELS + 1):
            local = np.arange(self.count(level))
            ids.append(self.cluster_ids(level, local))
            levels.append(np.full(len(local), level, dtype=np.int8))
            if level == 1:
                parents.append(pa.nulls(len(local), pa.int64()))
            else:
                parents.append(pa.array(self.cluster_ids(level - 1, self.parent_local(level, local))))
            descriptions.extend(self.descriptions(level))
        return pa.table(
            {
                "cluster_id": np.concatenate(ids),
                "level": np.concatenate(levels),
                "parent_id": pa.concat_arrays(parents),
                "description": descriptions,
            },
            schema=CLUSTERS_SCHEMA,
        )


def _sibling_names(words: tuple[str, ...], count: int, rng: np.random.Generator) -> list[str]:
    """``count`` distinct names for one parent's children, drawn from ``words``."""
    order = rng.permutation(len(words))
    names = []
    for rank in range(count):
        word = words[order[rank % len(words)]]
        repeat = rank // len(words)
        names.append(word if repeat == 0 else f"{word} {repeat + 1}")
    return names


def build_taxonomy(branching: tuple[int, int, int, int], rng: np.random.Generator) -> Taxonomy:
    """Name a regular tree; sibling names are distinct, so full-path descriptions are unique."""
    if len(branching) != NUM_LEVELS or any(b < 1 for b in branching):
        raise ValueError(f"branching must be {NUM_LEVELS} positive integers, got {branching}")
    names: list[tuple[str, ...]] = []
    parents = 1
    for level, children in enumerate(branching):
        level_names: list[str] = []
        for _ in range(parents):
            level_names.extend(_sibling_names(LEVEL_WORDS[level], children, rng))
        names.append(tuple(level_names))
        parents *= children
    return Taxonomy(tuple(int(b) for b in branching), tuple(names))  # type: ignore[arg-type]

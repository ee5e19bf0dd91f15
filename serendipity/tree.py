"""ClusterTree: the 4-level topic tree, its navigation and description <-> id lookups."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from serendipity.schema import CLUSTERS_FILE, NUM_LEVELS


class TreeError(ValueError):
    """The clusters table does not form a valid tree."""


@dataclass(frozen=True)
class Cluster:
    cluster_id: int
    level: int
    parent_id: int | None
    description: str


@dataclass
class ClusterTree:
    """Immutable view over ``clusters.parquet``. Levels are 1 (broadest) .. 4 (finest)."""

    clusters: dict[int, Cluster]
    _children: dict[int | None, list[int]] = field(init=False, repr=False)
    _by_description: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._children = {}
        self._by_description = {}
        for cluster in sorted(self.clusters.values(), key=lambda c: c.cluster_id):
            self._children.setdefault(cluster.parent_id, []).append(cluster.cluster_id)
            if cluster.description in self._by_description:
                raise TreeError(f"duplicate cluster description {cluster.description!r}")
            self._by_description[cluster.description] = cluster.cluster_id
        for cluster in self.clusters.values():
            if cluster.parent_id is None:
                if cluster.level != 1:
                    raise TreeError(f"cluster {cluster.cluster_id} at level {cluster.level} has no parent")
                continue
            parent = self.clusters.get(cluster.parent_id)
            if parent is None:
                raise TreeError(f"cluster {cluster.cluster_id} has unknown parent {cluster.parent_id}")
            if parent.level != cluster.level - 1:
                raise TreeError(
                    f"cluster {cluster.cluster_id} (level {cluster.level}) has parent "
                    f"{parent.cluster_id} at level {parent.level}"
                )

    # --- construction -----------------------------------------------------------------------
    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> ClusterTree:
        clusters = {}
        for row in frame.itertuples(index=False):
            parent = None if pd.isna(row.parent_id) else int(row.parent_id)
            clusters[int(row.cluster_id)] = Cluster(
                int(row.cluster_id), int(row.level), parent, str(row.description)
            )
        return cls(clusters)

    @classmethod
    def load(cls, dataset_dir: str | Path) -> ClusterTree:
        """Load from a dataset directory (or directly from a clusters Parquet file)."""
        path = Path(dataset_dir)
        if path.is_dir():
            path = path / CLUSTERS_FILE
        return cls.from_frame(pq.read_table(path).to_pandas())

    def to_frame(self) -> pd.DataFrame:
        rows = [
            (c.cluster_id, c.level, c.parent_id, c.description)
            for c in sorted(self.clusters.values(), key=lambda c: c.cluster_id)
        ]
        frame = pd.DataFrame(rows, columns=["cluster_id", "level", "parent_id", "description"])
        frame["parent_id"] = frame["parent_id"].astype("Int64")
        frame["level"] = frame["level"].astype("int8")
        return frame

    # --- navigation ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.clusters)

    def __contains__(self, cluster_id: object) -> bool:
        return cluster_id in self.clusters

    def level(self, cluster_id: int) -> int:
        return self.clusters[cluster_id].level

    def at_level(self, level: int) -> list[int]:
        return sorted(c.cluster_id for c in self.clusters.values() if c.level == level)

    def parent(self, cluster_id: int) -> int | None:
        return self.clusters[cluster_id].parent_id

    def children(self, cluster_id: int | None) -> list[int]:
        """Children of ``cluster_id``; ``None`` gives the roots (level 1)."""
        return list(self._children.get(cluster_id, []))

    def ancestors(self, cluster_id: int) -> list[int]:
        """Ancestors from the parent up to the root."""
        chain = []
        parent = self.parent(cluster_id)
        while parent is not None:
            chain.append(parent)
            parent = self.parent(parent)
        return chain

    def ancestor_at(self, cluster_id: int, level: int) -> int:
        """The ancestor of ``cluster_id`` at ``level`` (itself when already at that level)."""
        current = cluster_id
        while self.level(current) > level:
            current = self.parent(current)  # type: ignore[assignment]
        if self.level(current) != level:
            raise ValueError(f"cluster {cluster_id} is above level {level}")
        return current

    def path(self, cluster_id: int) -> list[int]:
        """Cluster ids from level 1 down to ``cluster_id``."""
        return [*reversed(self.ancestors(cluster_id)), cluster_id]

    def siblings(self, cluster_id: int) -> list[int]:
        """Other clusters with the same parent (at level 1: the other roots)."""
        return [c for c in self.children(self.parent(cluster_id)) if c != cluster_id]

    def leaves(self) -> list[int]:
        return self.at_level(NUM_LEVELS)

    # --- descriptions -------------------------------------------------------------------------
    def description(self, cluster_id: int) -> str:
        return self.clusters[cluster_id].description

    def cluster_for(self, description: str) -> int | None:
        """Exact-match lookup of a description; ``None`` if it names no cluster."""
        return self._by_description.get(description)

    def descriptions(self, cluster_ids: Iterable[int] | None = None) -> list[str]:
        ids = sorted(self.clusters) if cluster_ids is None else list(cluster_ids)
        return [self.description(c) for c in ids]

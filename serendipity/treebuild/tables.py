"""From cluster paths to the contract's tables, and the traffic balance report of a built tree.

The balance report (``BalanceReport``) is ``balance.json`` of a built tree, written with ``write`` and read
back with ``BalanceReport.read``; its JSON keys are the field names (a ratio over a zero traffic is
infinite, written as JSON's ``Infinity``, as before).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from serendipity.io import write_json_atomic
from serendipity.schema import CLUSTERS_SCHEMA, LEVEL_COLUMNS, NUM_LEVELS
from serendipity.treebuild.describe import PATH_SEPARATOR, prefix


def path_key(path: str) -> list[int]:
    return [int(part) for part in path.split(PATH_SEPARATOR)] if path else []


def cluster_ids(leaf_paths: list[str]) -> dict[str, int]:
    """Ids 1, 2, ... for every cluster path, level by level, in path order within a level."""
    ids: dict[str, int] = {}
    for level in range(1, NUM_LEVELS + 1):
        for path in sorted({prefix(leaf, level) for leaf in leaf_paths}, key=path_key):
            ids[path] = len(ids) + 1
    return ids


def clusters_table(ids: dict[str, int], descriptions: dict[str, str]) -> pa.Table:
    """The clusters table (CLUSTERS_SCHEMA) of a tree given by path -> id and path -> description."""
    rows = []
    for path, cluster_id in sorted(ids.items(), key=lambda entry: entry[1]):
        level = len(path_key(path))
        parent = ids[prefix(path, level - 1)] if level > 1 else None
        rows.append((cluster_id, level, parent, descriptions[path]))
    frame = pd.DataFrame(rows, columns=list(CLUSTERS_SCHEMA.names))
    frame["parent_id"] = frame["parent_id"].astype("Int64")
    return pa.Table.from_pandas(frame, schema=CLUSTERS_SCHEMA, preserve_index=False)


def leaf_levels(ids: dict[str, int]) -> pd.DataFrame:
    """One row per leaf path with the cluster ids of its ancestors: columns leaf_path, c1..c4."""
    leaves = [path for path in ids if len(path_key(path)) == NUM_LEVELS]
    rows = [
        (leaf, *(ids[prefix(leaf, level)] for level in range(1, NUM_LEVELS + 1)))
        for leaf in sorted(leaves, key=path_key)
    ]
    return pd.DataFrame(rows, columns=["leaf_path", *LEVEL_COLUMNS])


class LevelBalance(BaseModel):
    """The traffic balance of one level's clusters."""

    model_config = ConfigDict(frozen=True)

    clusters: int
    max_share: float
    min_share: float
    max_min_ratio: float
    cv: float  # coefficient of variation of the clusters' traffic
    worst_sibling_ratio: float  # the largest max/min traffic ratio among the children of one parent


class BalanceReport(BaseModel):
    """``balance.json``: the total traffic and every level's balance (keyed "1" .. "4")."""

    model_config = ConfigDict(frozen=True)

    total_traffic: float
    levels: dict[str, LevelBalance]

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="python")

    def write(self, path: Path) -> Path:
        """Write the report (atomically) to ``path``."""
        return write_json_atomic(self.to_json(), path)

    @classmethod
    def read(cls, path: Path) -> BalanceReport:
        return cls.model_validate(json.loads(path.read_text()))


def balance_report(leaf_traffic: pd.DataFrame) -> BalanceReport:
    """Per level: traffic shares of its clusters, max/min share ratio, coefficient of variation.

    ``leaf_traffic`` has columns path (leaf) and traffic. ``worst_sibling_ratio`` is the largest
    max/min traffic ratio among children of one parent, the quantity each split balances.
    """
    total = float(leaf_traffic["traffic"].sum())
    levels: dict[str, LevelBalance] = {}
    for level in range(1, NUM_LEVELS + 1):
        per_cluster = (
            leaf_traffic.assign(path=leaf_traffic["path"].map(lambda p, lv=level: prefix(p, lv)))
            .groupby("path")["traffic"]
            .sum()
        )
        traffic = per_cluster.to_numpy(dtype=np.float64)
        shares = traffic / total if total > 0 else np.zeros_like(traffic)
        parents = per_cluster.groupby(per_cluster.index.map(lambda p, lv=level: prefix(p, lv - 1)))
        sibling_ratios = [_ratio(group.to_numpy(dtype=np.float64)) for _, group in parents if len(group) > 1]
        levels[str(level)] = LevelBalance(
            clusters=int(len(traffic)),
            max_share=float(shares.max()),
            min_share=float(shares.min()),
            max_min_ratio=_ratio(traffic),
            cv=float(traffic.std() / traffic.mean()) if traffic.mean() > 0 else 0.0,
            worst_sibling_ratio=max(sibling_ratios, default=1.0),
        )
    return BalanceReport(total_traffic=total, levels=levels)


def _ratio(values: np.ndarray) -> float:
    smallest = float(values.min())
    return float(values.max() / smallest) if smallest > 0 else float("inf")


def format_balance(report: BalanceReport) -> str:
    lines = ["level clusters  max_share  min_share  max/min     cv  worst_siblings"]
    for level, stats in report.levels.items():
        lines.append(
            f"{level:>5} {stats.clusters:>8}  {stats.max_share:9.4f}  {stats.min_share:9.4f}"
            f"  {stats.max_min_ratio:7.3f}  {stats.cv:5.3f}  {stats.worst_sibling_ratio:14.3f}"
        )
    return "\n".join(lines)

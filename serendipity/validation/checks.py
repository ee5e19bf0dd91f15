"""Table-specific row checks of the pandas engine: the cluster tree, items against the tree, interactions.

Vectorised over rows; only the cycle search walks the (small) clusters table in Python.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from serendipity.schema import LEVEL_COLUMNS, NUM_LEVELS
from serendipity.validation.rules import (
    DUPLICATE_CLUSTER,
    DUPLICATE_DESCRIPTION,
    DUPLICATE_INTERACTION,
    DUPLICATE_ITEM,
    EMPTY_DESCRIPTION,
    LEVEL_OUT_OF_RANGE,
    MISSING_PARENT,
    PARENT_CYCLE,
    QUARANTINED_PARENT,
    ROOT_WITH_PARENT,
    SATISFACTION_OUT_OF_RANGE,
    UNKNOWN_ITEM,
    UNKNOWN_PARENT,
    WRONG_LEVEL_PARENT,
    Check,
    cast_check,
    unusable_cluster_check,
    wrong_parent_check,
)
from serendipity.validation.table import TableValidation


def _present(series: pd.Series) -> np.ndarray:
    return series.notna().to_numpy()


def _first_occurrence_duplicates(frame: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """Rows whose (non-null) key already appeared in an earlier row."""
    complete = frame[keys].notna().all(axis=1).to_numpy()
    duplicated = np.zeros(len(frame), dtype=bool)
    duplicated[complete] = frame.loc[complete, keys].duplicated(keep="first").to_numpy()
    return duplicated


def _cycle_members(parent_of: dict[int, int]) -> set[int]:
    """Cluster ids lying on a cycle of parent links."""
    on_cycle: set[int] = set()
    finished: set[int] = set()
    for start in parent_of:
        path: list[int] = []
        position: dict[int, int] = {}
        node: int | None = start
        while node is not None and node not in finished and node not in position:
            position[node] = len(path)
            path.append(node)
            node = parent_of.get(node)
        if node is not None and node in position:
            on_cycle.update(path[position[node] :])
        finished.update(path)
    return on_cycle


def check_clusters(clusters: TableValidation) -> None:
    """Level range, descriptions, duplicates and every tree rule; quarantine cascades to descendants."""
    typed = clusters.typed
    level, parent, description = typed["level"], typed["parent_id"], typed["description"]
    level_valid = level.between(1, NUM_LEVELS).fillna(False).to_numpy(dtype=bool)
    clusters.flag(Check("level", LEVEL_OUT_OF_RANGE), _present(level) & ~level_valid)
    blank = description.fillna("x").astype(str).str.strip() == ""
    clusters.flag(Check("description", EMPTY_DESCRIPTION), blank.to_numpy())
    duplicate_id = _first_occurrence_duplicates(typed, ["cluster_id"])
    clusters.flag(Check("cluster_id", DUPLICATE_CLUSTER), duplicate_id)
    described = pd.DataFrame({"description": description.mask(blank)})
    clusters.flag(
        Check("description", DUPLICATE_DESCRIPTION), _first_occurrence_duplicates(described, ["description"])
    )

    is_canonical = _present(typed["cluster_id"]) & ~duplicate_id
    canonical = typed.loc[is_canonical].set_index("cluster_id")
    has_parent = _present(parent)
    parent_uncastable = clusters.flags.get(cast_check(clusters.file, "parent_id"), np.zeros(len(typed), bool))
    clusters.flag(
        Check("parent_id", ROOT_WITH_PARENT), (level == 1).fillna(False).to_numpy(bool) & has_parent
    )
    clusters.flag(
        Check("parent_id", MISSING_PARENT),
        level.between(2, NUM_LEVELS).fillna(False).to_numpy(bool) & ~has_parent & ~parent_uncastable,
    )
    parent_known = parent.isin(canonical.index).to_numpy(bool) & has_parent
    clusters.flag(Check("parent_id", UNKNOWN_PARENT), has_parent & ~parent_known)
    parent_level = parent.map(canonical["level"]).astype("Int64")
    comparable = parent_known & level_valid & parent_level.between(1, NUM_LEVELS).fillna(False).to_numpy(bool)
    wrong_level = comparable & (parent_level != level - 1).fillna(False).to_numpy(bool)
    clusters.flag(Check("parent_id", WRONG_LEVEL_PARENT), wrong_level)

    links = canonical["parent_id"].dropna()
    cycles = _cycle_members({int(k): int(v) for k, v in links.items()})
    clusters.flag(
        Check("parent_id", PARENT_CYCLE), is_canonical & typed["cluster_id"].isin(cycles).to_numpy(bool)
    )

    cascade = np.zeros(len(typed), dtype=bool)
    for _ in range(len(typed) + 1):
        unusable_ids = typed.loc[is_canonical & (clusters.quarantined | cascade), "cluster_id"]
        updated = cascade | (parent.isin(unusable_ids).to_numpy(bool) & has_parent)
        if (updated == cascade).all():
            break
        cascade = updated
    clusters.flag(Check("parent_id", QUARANTINED_PARENT), cascade)


def cluster_lookup(usable_clusters: pd.DataFrame) -> pd.DataFrame:
    """Usable clusters indexed by id: their level and parent (the items checks join against it)."""
    return usable_clusters.set_index("cluster_id")[["level", "parent_id"]]


def check_items(items: TableValidation, clusters: pd.DataFrame | None) -> None:
    """Duplicate ids, and (when the clusters are usable) c1..c4 against the tree."""
    typed = items.typed
    items.flag(Check("item_id", DUPLICATE_ITEM), _first_occurrence_duplicates(typed, ["item_id"]))
    if clusters is None:
        return
    lookup = cluster_lookup(clusters)
    usable_at_level = []
    for level, column in enumerate(LEVEL_COLUMNS, start=1):
        at_level = typed[column].isin(lookup.index[lookup["level"] == level]).to_numpy(bool)
        items.flag(unusable_cluster_check(level), _present(typed[column]) & ~at_level)
        usable_at_level.append(at_level)
    for level in range(2, NUM_LEVELS + 1):
        column, parent_column = LEVEL_COLUMNS[level - 1], LEVEL_COLUMNS[level - 2]
        recorded_parent = typed[column].map(lookup["parent_id"]).astype("Int64")
        mismatch = (recorded_parent != typed[parent_column]).fillna(True).to_numpy(bool)
        both_usable = usable_at_level[level - 1] & usable_at_level[level - 2]
        items.flag(wrong_parent_check(level), both_usable & mismatch)


def check_interactions(interactions: TableValidation, usable_item_ids: pd.Series | None) -> None:
    """Satisfaction range, duplicate (user, item, ts) events and (when items are usable) unknown items."""
    typed = interactions.typed
    satisfaction = typed["satisfaction"].astype("float64")
    out_of_range = satisfaction.notna() & ~satisfaction.between(0.0, 1.0)
    interactions.flag(Check("satisfaction", SATISFACTION_OUT_OF_RANGE), out_of_range.to_numpy())
    duplicate = _first_occurrence_duplicates(typed, ["user_id", "item_id", "ts"])
    interactions.flag(Check("ts", DUPLICATE_INTERACTION), duplicate)
    if usable_item_ids is not None:
        known = typed["item_id"].isin(usable_item_ids).to_numpy(bool)
        interactions.flag(Check("item_id", UNKNOWN_ITEM), _present(typed["item_id"]) & ~known)

"""Build the contract's 4-level cluster tree from per-item category paths.

Rules shared by every adapter:

* a path deeper than 4 levels is truncated to its first 4 names;
* a shallower path is padded with :data:`PAD_LABEL` children, one per missing level, so an item
  whose finest category is at level 2 sits in ``<level 2> > (general) > (general)``;
* cluster ids are assigned level by level in sorted path order, starting at 1, so the same
  paths always give the same ids;
* a description is the node's own name when no other node has that name; otherwise it is
  ``<parent description> > <name>`` (parent descriptions are unique level by level, so this is too).

A *placeholder* tree (datasets without a hierarchy) is a one-name path per item padded the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd

from serendipity.schema import LEVEL_COLUMNS, NUM_LEVELS

PAD_LABEL = "(general)"
PATH_SEPARATOR = " > "


def normalize_path(names: Sequence[str], levels: int = NUM_LEVELS) -> tuple[str, ...]:
    """Truncate or pad a non-empty category path to exactly ``levels`` names."""
    cleaned = [" ".join(str(name).split()) for name in names]
    if not cleaned or any(not name for name in cleaned):
        raise ValueError(f"category path {list(names)!r} is empty or holds an empty name")
    return tuple(cleaned[:levels]) + (PAD_LABEL,) * max(0, levels - len(cleaned))


def build_tree(paths: Sequence[tuple[str, ...]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build the clusters table and each path's ``c1..c4`` cluster ids.

    Args:
        paths: one normalized (4-name) path per item, in item order.

    Returns:
        ``(clusters, levels)``: clusters with ``cluster_id, level, parent_id, description``, and a
        frame with one row per input path and the columns ``c1..c4``.
    """
    prefixes_by_level = [sorted({path[:level] for path in paths}) for level in range(1, NUM_LEVELS + 1)]
    name_counts = Counter(prefix[-1] for prefixes in prefixes_by_level for prefix in prefixes)
    ids: dict[tuple[str, ...], int] = {}
    descriptions: dict[tuple[str, ...], str] = {}
    rows: list[tuple[int, int, int | None, str]] = []
    for level, prefixes in enumerate(prefixes_by_level, start=1):
        for prefix in prefixes:
            ids[prefix] = len(ids) + 1
            parent = prefix[:-1]
            name = prefix[-1]
            unique = name_counts[name] == 1 or not parent
            descriptions[prefix] = name if unique else f"{descriptions[parent]}{PATH_SEPARATOR}{name}"
            rows.append((ids[prefix], level, ids[parent] if parent else None, descriptions[prefix]))
    clusters = pd.DataFrame(rows, columns=["cluster_id", "level", "parent_id", "description"])
    clusters["description"] = _make_unique(clusters["description"])
    clusters["cluster_id"] = clusters["cluster_id"].astype("int64")
    clusters["level"] = clusters["level"].astype("int8")
    clusters["parent_id"] = clusters["parent_id"].astype("Int64")
    levels = pd.DataFrame(
        {
            column: np.fromiter((ids[path[:level]] for path in paths), dtype="int64", count=len(paths))
            for level, column in enumerate(LEVEL_COLUMNS, start=1)
        }
    )
    return clusters, levels


def _make_unique(descriptions: pd.Series) -> pd.Series:
    """Suffix ``[2]``, ``[3]``... to a description that still collides (a name equal to a joined path)."""
    seen: Counter[str] = Counter()
    unique = []
    for description in descriptions:
        seen[description] += 1
        unique.append(description if seen[description] == 1 else f"{description} [{seen[description]}]")
    if len(set(unique)) != len(unique):
        raise AssertionError("cluster descriptions are still not unique")
    return pd.Series(unique, index=descriptions.index)


def placeholder_paths(labels: Sequence[str]) -> list[tuple[str, ...]]:
    """A flat placeholder: each label at level 1 with a single ``(general)`` chain below it."""
    return [normalize_path([label]) for label in labels]

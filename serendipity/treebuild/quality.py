"""How well cluster names represent their members: a MiniLM cosine ratio (higher is better).

The result (``NameQuality``) is written as ``name_quality`` in a built tree's ``tree_info.json`` and in the
naming benchmark's figures; its JSON keys are the field names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from serendipity.treebuild.describe import PATH_SEPARATOR, prefix
from serendipity.treebuild.embed import embed_texts

DEFINITION = (
    "per cluster c of a level: own(c) = mean cosine between the MiniLM embedding of c's description "
    "and its members' texts, other(c) = the same with the other clusters' members of that level; "
    "level ratio = mean own / mean other over the level's clusters; overall = mean of the level ratios"
)


class LevelNameQuality(BaseModel):
    """One level's mean own and other cosine over its clusters, and their ratio."""

    model_config = ConfigDict(frozen=True)

    clusters: int
    own_cosine: float
    other_cosine: float
    ratio: float


class NameQuality(BaseModel):
    """Per level (keyed "1" ..) and overall name quality (None when no level has clusters to compare)."""

    model_config = ConfigDict(frozen=True)

    overall: float | None
    levels: dict[str, LevelNameQuality]
    items: int
    definition: str = DEFINITION

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="python")


def name_quality(
    descriptions: Mapping[str, str],
    item_paths: Sequence[str],
    item_vectors: np.ndarray,
    *,
    encode: Callable[[list[str]], np.ndarray] = embed_texts,
) -> NameQuality:
    """Name-vs-members cosine over name-vs-other-members cosine, per level and overall.

    For a cluster ``c`` at level ``L`` with description vector ``d_c`` (``encode``, unit norm), members
    ``M_c`` (items whose leaf path starts with c's path) and others ``O_c`` (every other item, i.e. the
    members of the other level-L clusters): ``own(c) = mean_{i in M_c} cos(d_c, x_i)`` and
    ``other(c) = mean_{j in O_c} cos(d_c, x_j)``. A level's ``ratio`` is ``mean_c own(c) / mean_c
    other(c)`` over its clusters with members on both sides (a ratio of means, stable when a single
    ``other`` is near zero); ``overall`` is the unweighted mean of the level ratios. 1.0 means a name
    is no closer to its members than to anything else.

    Args:
        descriptions: path (``"0.2"``) -> description, as ``describe_tree`` returns.
        item_paths: each item's leaf path.
        item_vectors: ``(n, dim)`` unit-norm MiniLM embeddings of the items' texts (title + text),
            aligned with ``item_paths`` (e.g. build_tree's ``text_embedding``, or a sample of it).
    """
    vectors = np.asarray(item_vectors, dtype=np.float64)
    if len(vectors) != len(item_paths):
        raise ValueError(f"{len(item_paths)} item paths but {len(vectors)} item vectors")
    paths = sorted(descriptions)
    names = np.asarray(encode([descriptions[p] for p in paths]), dtype=np.float64)
    cosines = dict(zip(paths, names @ vectors.T, strict=True))  # unit vectors: dot = cosine
    depth = max((len(p.split(PATH_SEPARATOR)) for p in item_paths), default=0)
    levels: dict[str, LevelNameQuality] = {}
    for level in range(1, depth + 1):
        cluster_of_item = np.array([prefix(p, level) for p in item_paths])
        own, other = [], []
        for path in (p for p in paths if len(p.split(PATH_SEPARATOR)) == level):
            members = cluster_of_item == path
            if members.any() and not members.all():
                own.append(float(cosines[path][members].mean()))
                other.append(float(cosines[path][~members].mean()))
        if own:
            levels[str(level)] = LevelNameQuality(
                clusters=len(own),
                own_cosine=float(np.mean(own)),
                other_cosine=float(np.mean(other)),
                ratio=float(np.mean(own) / np.mean(other)),
            )
    ratios = [stats.ratio for stats in levels.values()]
    overall = float(np.mean(ratios)) if ratios else None
    return NameQuality(overall=overall, levels=levels, items=len(vectors))


def format_name_quality(report: NameQuality) -> str:
    """A small table of ``name_quality``'s result, for a job's output."""
    lines = ["level clusters  own_cos  other_cos  ratio (name quality: higher is better)"]
    for level, stats in report.levels.items():
        lines.append(
            f"{level:>5} {stats.clusters:>8}  {stats.own_cosine:7.4f}  {stats.other_cosine:9.4f}"
            f"  {stats.ratio:.4f}"
        )
    overall = report.overall
    lines.append(f"overall name quality: {overall:.4f}" if overall is not None else "overall: undefined")
    return "\n".join(lines)

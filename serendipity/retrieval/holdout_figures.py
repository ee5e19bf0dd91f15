"""Typed offline metrics of the retriever: what ``train_and_publish_retriever`` writes and its readers read.

``RetrieverMetrics.write`` writes ``WorkLayout.retriever_metrics_path`` (``retriever/metrics.json``, next to
the model) and ``RetrieverMetrics.read`` reads it back. On disk the ranking figures carry their cut-off in
their keys (``hit_rate@10``, ``ndcg@10``), as they always did; ``k`` says which. ``level`` and ``clusters``
are only written when set (``holdout_report`` alone leaves them out).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RankingFigures:
    """hit rate@k and NDCG@k of one method, over ``users`` evaluated users."""

    hit_rate: float
    ndcg: float
    users: int

    def to_json(self, k: int) -> dict[str, Any]:
        return {f"hit_rate@{k}": self.hit_rate, f"ndcg@{k}": self.ndcg, "users": self.users}

    @classmethod
    def from_json(cls, data: dict[str, Any], k: int) -> RankingFigures:
        return cls(hit_rate=data[f"hit_rate@{k}"], ndcg=data[f"ndcg@{k}"], users=data["users"])


@dataclass(frozen=True)
class DataSummary:
    """The training data the metrics were measured on."""

    items: int
    train_users: int
    train_events: int
    holdout_users: int
    cutoff: str  # ISO timestamp of the time split


@dataclass(frozen=True)
class RetrieverMetrics:
    """The model's and the popularity baseline's figures on the holdout, and which one wins."""

    k: int
    sasrec: RankingFigures
    popularity: RankingFigures
    beats_popularity: bool
    data: DataSummary
    level: int | None = None  # the cluster level the index is built on
    clusters: int | None = None  # clusters of that level in the vocabulary

    def to_json(self) -> dict[str, Any]:
        figures = {
            "k": self.k,
            "sasrec": self.sasrec.to_json(self.k),
            "popularity": self.popularity.to_json(self.k),
            "beats_popularity": self.beats_popularity,
            "data": asdict(self.data),
        }
        extra = {
            name: getattr(self, name) for name in ("level", "clusters") if getattr(self, name) is not None
        }
        return figures | extra

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RetrieverMetrics:
        k = int(data["k"])
        summary = {f.name: data["data"][f.name] for f in fields(DataSummary)}
        return cls(
            k=k,
            sasrec=RankingFigures.from_json(data["sasrec"], k),
            popularity=RankingFigures.from_json(data["popularity"], k),
            beats_popularity=bool(data["beats_popularity"]),
            data=DataSummary(**summary),
            level=data.get("level"),
            clusters=data.get("clusters"),
        )

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(self.to_json(), indent=2, default=str))
        return path

    @classmethod
    def read(cls, path: Path) -> RetrieverMetrics:
        return cls.from_json(json.loads(path.read_text()))

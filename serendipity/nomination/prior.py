"""The logged transition prior as the library reads it: the time cuts, P(next | context) lookups.

Written by the Spark ``prior`` job (``spark_jobs/prior.py``): ``cluster_prior.parquet`` holds
P(next cluster | context cluster) for every sibling, ``item_prior.parquet`` P(next cluster | item) for
items with enough training transitions, and ``prior_info.json`` (``PriorInfo``) the cuts, the smoothing,
the fitted shrinkage strength and the snapshot id that model versions name.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from serendipity.io import write_json_atomic
from serendipity.layout import WorkLayout

PRIOR_VERSION_PREFIX = "prior-"


@dataclass(frozen=True)
class TimeCuts:
    """Pairs before ``train_end_micros`` train, before ``calibration_end_micros`` calibrate, the rest
    validate (UTC microseconds since the epoch)."""

    train_end_micros: float
    calibration_end_micros: float

    def iso(self) -> dict[str, str]:
        def stamp(micros: float) -> str:
            return pd.Timestamp(int(math.floor(micros)), unit="us", tz="UTC").isoformat()

        return {
            "train_end": stamp(self.train_end_micros),
            "calibration_end": stamp(self.calibration_end_micros),
        }


@dataclass(frozen=True)
class PriorInfo:
    """What the prior job decided: the split, the smoothing, the fitted shrinkage, and what it counted."""

    cuts: TimeCuts
    smoothing: float
    shrinkage: float  # beta: pseudo-transitions of the cluster prior in an item's prior
    min_item_transitions: int
    pairs_by_split: dict[str, int]
    warm_items: int  # items with an item-level prior
    snapshot: str = ""

    def with_snapshot(self) -> PriorInfo:
        """The same info with ``snapshot``: a digest of everything else (same data, same id)."""
        body = json.dumps({**asdict(self), "snapshot": ""}, sort_keys=True)
        digest = hashlib.sha256(body.encode()).hexdigest()[:10]
        return PriorInfo(**{**asdict(self), "cuts": self.cuts, "snapshot": digest})

    @property
    def version(self) -> str:
        return f"{PRIOR_VERSION_PREFIX}{self.snapshot}"

    def write(self, path: Path) -> None:
        write_json_atomic({**asdict(self), "cuts_iso": self.cuts.iso()}, path)

    @classmethod
    def read(cls, path: Path) -> PriorInfo:
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run the prior stage (spark_jobs/prior.py) first")
        data = json.loads(path.read_text())
        data.pop("cuts_iso", None)
        return cls(**{**data, "cuts": TimeCuts(**data["cuts"])})


class TransitionPrior:
    """P(next cluster | evidence) for a context item: its own (shrunk) prior when it is warm, else its
    cluster's; uniform over the candidates when the cluster has no row either."""

    def __init__(self, cluster_prior: pd.DataFrame, item_prior: pd.DataFrame, info: PriorInfo) -> None:
        self.info = info
        self._cluster = {
            (int(c), int(n)): float(p)
            for c, n, p in cluster_prior[["context_cluster", "next_cluster", "probability"]].itertuples(
                index=False
            )
        }
        self._item = {
            (int(i), int(n)): float(p)
            for i, n, p in item_prior[["context_item_id", "next_cluster", "probability"]].itertuples(
                index=False
            )
        }
        self.warm_items = frozenset(int(i) for i in item_prior["context_item_id"].unique())

    @classmethod
    def load(cls, cluster_path: Path, item_path: Path, info_path: Path) -> TransitionPrior:
        return cls(
            pq.read_table(cluster_path).to_pandas(),
            pq.read_table(item_path).to_pandas(),
            PriorInfo.read(info_path),
        )

    def is_warm(self, item_id: int) -> bool:
        return int(item_id) in self.warm_items

    def probabilities(self, item_id: int, own_cluster: int, candidates: Sequence[int]) -> list[float]:
        """The prior over ``candidates``, renormalised to sum to 1 over them."""
        if self.is_warm(item_id):
            raw = [self._item.get((int(item_id), int(c)), math.nan) for c in candidates]
        else:
            raw = [math.nan] * len(candidates)
        raw = [
            r if math.isfinite(r) else self._cluster.get((int(own_cluster), int(c)), math.nan)
            for r, c in zip(raw, candidates, strict=True)
        ]
        if not candidates or any(not math.isfinite(r) or r <= 0 for r in raw):
            return [1.0 / len(candidates)] * len(candidates) if candidates else []
        total = sum(raw)
        return [r / total for r in raw]


def load_prior(layout: WorkLayout) -> TransitionPrior:
    """The prior the ``prior`` stage wrote under ``layout``."""
    return TransitionPrior.load(layout.cluster_prior_path, layout.item_prior_path, layout.prior_info_path)


def epoch_micros(ts: pd.Series) -> pd.Series:
    """UTC microseconds since the epoch, whatever the resolution the timestamps were read with."""
    return pd.to_datetime(ts, utc=True).dt.as_unit("us").astype("int64")

"""Point-in-time-correct training data for the sequence model, from the validated logs.

Training sees only engaged interactions (satisfaction above ``engagement.satisfaction_above``) strictly
before a time cutoff; the last ``retrieval.holdout_fraction`` of the log's time range is held out. For
each user, the holdout example is the first engaged item at or after the cutoff, predicted from the
user's items before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from serendipity.config import PipelineConfig
from serendipity.layout import WorkLayout
from serendipity.retrieval.holdout_figures import DataSummary
from serendipity.retrieval.model import PADDING_INDEX
from serendipity.schema import INTERACTIONS_FILE, ITEMS_FILE, level_column

ITEM_TABLE_FILE = "items.parquet"


@dataclass(frozen=True)
class ItemVocabulary:
    """Item ids <-> model indices (1..n; 0 is padding) and each item's level-L cluster."""

    item_ids: np.ndarray  # int64, position i holds the item of index i + 1
    cluster_ids: np.ndarray  # int64, aligned with item_ids

    def __post_init__(self) -> None:
        if len(self.item_ids) != len(self.cluster_ids):
            raise ValueError("item_ids and cluster_ids differ in length")
        if len(np.unique(self.item_ids)) != len(self.item_ids):
            raise ValueError("item ids in the vocabulary are not unique")
        lookup = pd.Series(np.arange(1, len(self.item_ids) + 1), index=self.item_ids)
        object.__setattr__(self, "_index", lookup)

    def __len__(self) -> int:
        return len(self.item_ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index.index  # type: ignore[attr-defined]

    def indices(self, item_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Model indices of ``item_ids``; unknown items map to padding (0)."""
        found = self._index.reindex(np.asarray(item_ids, dtype=np.int64))  # type: ignore[attr-defined]
        return found.fillna(PADDING_INDEX).to_numpy(dtype=np.int64)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"item_id": self.item_ids, "cluster_id": self.cluster_ids})

    def save(self, directory: Path) -> None:
        self.to_frame().to_parquet(directory / ITEM_TABLE_FILE, index=False)

    @classmethod
    def load(cls, directory: Path) -> ItemVocabulary:
        frame = pq.read_table(directory / ITEM_TABLE_FILE).to_pandas()
        return cls(frame["item_id"].to_numpy(np.int64), frame["cluster_id"].to_numpy(np.int64))


@dataclass(frozen=True)
class TrainingData:
    vocabulary: ItemVocabulary
    train_sequences: list[np.ndarray]  # per user, engaged item indices before the cutoff, oldest first
    holdout_inputs: list[np.ndarray]  # per evaluated user, item indices before the cutoff
    holdout_targets: np.ndarray  # per evaluated user, index of the first engaged item after the cutoff
    popularity: np.ndarray  # engaged count per item index before the cutoff (index 0 unused)
    cutoff: pd.Timestamp

    def summary(self) -> DataSummary:
        return DataSummary(
            items=len(self.vocabulary),
            train_users=len(self.train_sequences),
            train_events=int(sum(len(s) for s in self.train_sequences)),
            holdout_users=len(self.holdout_targets),
            cutoff=self.cutoff.isoformat(),
        )


def load_vocabulary(config: PipelineConfig) -> ItemVocabulary:
    """Every catalog item (sorted by id) with its level-L cluster (``mining.level``)."""
    path = WorkLayout.of(config).catalog_dir() / ITEMS_FILE
    column = level_column(config.mining.level)
    items = pq.read_table(path, columns=["item_id", column]).to_pandas().sort_values("item_id")
    return ItemVocabulary(items["item_id"].to_numpy(np.int64), items[column].to_numpy(np.int64))


def time_cutoff(timestamps: pd.Series, holdout_fraction: float) -> pd.Timestamp:
    """The instant that leaves the last ``holdout_fraction`` of the time range for evaluation."""
    start, end = timestamps.min(), timestamps.max()
    return start + (end - start) * (1.0 - holdout_fraction)


def build_training_data(
    interactions: pd.DataFrame, vocabulary: ItemVocabulary, engaged_above: float, holdout_fraction: float
) -> TrainingData:
    """Sequences before the cutoff and one holdout example per user with engagement after it."""
    missing = {"user_id", "item_id", "ts", "satisfaction"} - set(interactions.columns)
    if missing:
        raise ValueError(f"interactions lack columns {sorted(missing)}")
    engaged = interactions.loc[interactions["satisfaction"] > engaged_above, ["user_id", "item_id", "ts"]]
    engaged = engaged.assign(index=vocabulary.indices(engaged["item_id"].to_numpy()))
    unknown = engaged["index"] == PADDING_INDEX
    if unknown.any():
        sample = engaged.loc[unknown, "item_id"].unique()[:5].tolist()
        raise ValueError(f"{int(unknown.sum())} engaged interactions name items not in the catalog: {sample}")
    cutoff = time_cutoff(interactions["ts"], holdout_fraction)
    engaged = engaged.sort_values(["user_id", "ts", "item_id"], kind="stable")
    before = engaged[engaged["ts"] < cutoff]
    after = engaged[engaged["ts"] >= cutoff]
    sequences = {int(u): g["index"].to_numpy(np.int64) for u, g in before.groupby("user_id", sort=True)}
    first_after = after.groupby("user_id", sort=True)["index"].first()
    evaluated = [int(u) for u in first_after.index if int(u) in sequences]
    popularity = np.bincount(before["index"].to_numpy(np.int64), minlength=len(vocabulary) + 1)
    return TrainingData(
        vocabulary=vocabulary,
        train_sequences=list(sequences.values()),
        holdout_inputs=[sequences[u] for u in evaluated],
        holdout_targets=first_after.loc[evaluated].to_numpy(np.int64),
        popularity=popularity,
        cutoff=pd.Timestamp(cutoff),
    )


def load_training_data(config: PipelineConfig) -> TrainingData:
    """``build_training_data`` over the validated logs and the catalog of ``config``."""
    layout = WorkLayout.of(config)
    path = layout.validated_dir / INTERACTIONS_FILE
    if not path.exists():  # a file, or a directory of part files as Spark writes it
        raise FileNotFoundError(f"validated interactions not found at {path}; run the validate stage first")
    interactions = pq.read_table(path, columns=["user_id", "item_id", "ts", "satisfaction"]).to_pandas()
    return build_training_data(
        interactions,
        load_vocabulary(config),
        config.engagement.satisfaction_above,
        config.retrieval.holdout_fraction,
    )


def pad_left(sequences: Sequence[np.ndarray], length: int) -> np.ndarray:
    """The last ``length`` items of each sequence, left-padded with 0, as one (n, length) array."""
    out = np.full((len(sequences), length), PADDING_INDEX, dtype=np.int64)
    for row, sequence in enumerate(sequences):
        tail = np.asarray(sequence, dtype=np.int64)[-length:]
        if len(tail):
            out[row, length - len(tail) :] = tail
    return out


def training_windows(sequences: Sequence[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets), each (n, length): every sequence cut from its end into windows of length + 1.

    targets[:, t] is the item after inputs[:, t] (0 where there is none).
    """
    windows: list[np.ndarray] = []
    for sequence in sequences:
        for end in range(len(sequence), 1, -length):
            windows.append(sequence[max(0, end - length - 1) : end])
    if not windows:
        raise ValueError("no user has two or more engaged items before the cutoff: nothing to train on")
    padded = pad_left(windows, length + 1)
    return padded[:, :-1], padded[:, 1:]

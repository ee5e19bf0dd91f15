"""What the simulated experiment knows before it starts: the users' stored recent items, the clusters
they engaged with in the logs, when the logs end, item popularity and the popular corpus."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from serendipity.config import PipelineConfig
from serendipity.layout import WorkLayout
from serendipity.schema import (
    EVENT_TIMESTAMP,
    INTERACTIONS_FILE,
    ITEMS_FILE,
    RECENT_ITEMS_FEATURE,
    level_column,
)


class ExperimentInputError(FileNotFoundError):
    """An upstream stage output the experiment needs is missing."""


def _read(path: Path, columns: list[str], stage: str) -> pd.DataFrame:
    if not path.exists():
        raise ExperimentInputError(f"{path} not found; run the {stage} stage before the experiment")
    table = pq.read_table(path)
    missing = [column for column in columns if column not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing columns {missing} (has {table.column_names})")
    return table.select(columns).to_pandas()


@dataclass(frozen=True)
class PreExperiment:
    stored_history: dict[int, list[int]]  # user -> latest recent_item_ids snapshot, oldest first
    engaged_clusters: dict[int, frozenset[int]]  # user -> level-L clusters engaged in the logs
    item_cluster: dict[int, int]  # item -> level-L cluster (the catalogue)
    logs_end: pd.Timestamp
    impressions: pd.Series  # item_id -> impressions in the logs (every catalogue item, zeros included)
    corpus: pd.DataFrame  # the popular corpus: item_id, impressions

    @property
    def catalogue_size(self) -> int:
        return len(self.item_cluster)


def load_pre_experiment(config: PipelineConfig) -> PreExperiment:
    layout = WorkLayout.of(config)
    level = level_column(config.mining.level)
    items = _read(layout.catalog_dir() / ITEMS_FILE, ["item_id", level], "validate")
    item_cluster = dict(zip(items["item_id"].astype(int), items[level].astype(int), strict=True))
    logs = _read(
        layout.validated_dir / INTERACTIONS_FILE, ["user_id", "item_id", "ts", "satisfaction"], "validate"
    )
    engaged = logs[logs["satisfaction"] > config.engagement.satisfaction_above]
    engaged_clusters = {
        int(user): frozenset(int(item_cluster[i]) for i in group if int(i) in item_cluster)
        for user, group in engaged.groupby("user_id")["item_id"]
    }
    histories = _read(
        layout.user_history_path, ["user_id", RECENT_ITEMS_FEATURE, EVENT_TIMESTAMP], "user_history"
    )
    latest = histories.sort_values(EVENT_TIMESTAMP, kind="stable").groupby("user_id").last()
    stored = {
        int(user): [int(i) for i in reversed(list(recent))]
        for user, recent in latest[RECENT_ITEMS_FEATURE].items()
    }
    counts = logs["item_id"].value_counts()
    impressions = pd.Series(np.zeros(len(item_cluster), dtype=np.int64), index=sorted(item_cluster))
    known = counts.index.intersection(impressions.index)
    impressions.loc[known] = counts.loc[known].to_numpy()
    corpus = _read(layout.corpus_path, ["item_id", "impressions"], "corpus")
    corpus = corpus[corpus["item_id"].isin(item_cluster)].reset_index(drop=True)
    if corpus.empty:
        raise ValueError(
            f"{layout.corpus_path}: no corpus item is in the catalogue; nothing to use as context"
        )
    return PreExperiment(
        stored_history=stored,
        engaged_clusters=engaged_clusters,
        item_cluster=item_cluster,
        logs_end=pd.Timestamp(logs["ts"].max()),
        impressions=impressions,
        corpus=corpus,
    )

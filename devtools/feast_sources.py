"""Synthetic Feast sources following the contract schemas, for the Feast benchmark and the Feast tests.

Random rows for the three views (item serendipity, item meta, user history) under a config's work dir,
all stamped with one event time.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa

from serendipity.config import PipelineConfig
from serendipity.io import write_parquet_atomic
from serendipity.layout import WorkLayout
from serendipity.schema import (
    ALTERNATIVE_SCORES_COLUMN,
    ALTERNATIVES_FEATURE,
    EVENT_TIMESTAMP,
    IMPRESSIONS_FEATURE,
    ITEM_JOIN_KEY,
    ITEM_META_SCHEMA,
    LEVEL_COLUMNS,
    MEDIA_FALLBACK_COLUMN,
    MODEL_VERSION_FEATURE,
    PROMPT_STYLE_COLUMN,
    REASONING_FEATURE,
    RECENT_ITEMS_FEATURE,
    SERENDIPITOUS_CLUSTER_FEATURE,
    SERENDIPITOUS_DESCRIPTION_FEATURE,
    SERENDIPITY_SCHEMA,
    SERENDIPITY_SCORE_FEATURE,
    USER_HISTORY_SCHEMA,
    USER_JOIN_KEY,
)


def write_sources(config: PipelineConfig, items: int, users: int, stamp: datetime, seed: int = 0) -> int:
    """Random rows following the contract schemas; returns the number of source rows written."""
    rng = np.random.default_rng(seed)
    layout = WorkLayout.of(config)
    item_ids = np.arange(items, dtype=np.int64)
    clusters = rng.integers(0, 1000, size=(items, 4))
    serendipity = {
        ITEM_JOIN_KEY: item_ids,
        SERENDIPITOUS_CLUSTER_FEATURE: rng.integers(0, 1000, size=items),
        SERENDIPITOUS_DESCRIPTION_FEATURE: [f"cluster {c}" for c in clusters[:, 2]],
        SERENDIPITY_SCORE_FEATURE: rng.random(items),
        ALTERNATIVES_FEATURE: [list(row) for row in rng.integers(0, 1000, size=(items, 2))],
        ALTERNATIVE_SCORES_COLUMN: [[0.5, 0.25]] * items,
        REASONING_FEATURE: ["bench"] * items,
        MEDIA_FALLBACK_COLUMN: [False] * items,
        MODEL_VERSION_FEATURE: ["bench"] * items,
        PROMPT_STYLE_COLUMN: ["video_cot"] * items,
        EVENT_TIMESTAMP: [stamp] * items,
    }
    meta = {
        ITEM_JOIN_KEY: item_ids,
        **{column: clusters[:, level] for level, column in enumerate(LEVEL_COLUMNS)},
        IMPRESSIONS_FEATURE: rng.integers(0, 10_000, size=items),
        EVENT_TIMESTAMP: [stamp] * items,
    }
    length = config.features.history_length
    history = {
        USER_JOIN_KEY: np.arange(users, dtype=np.int64),
        RECENT_ITEMS_FEATURE: [list(row) for row in rng.integers(0, items, size=(users, length))],
        EVENT_TIMESTAMP: [stamp] * users,
    }
    write_parquet_atomic(pa.table(serendipity, schema=SERENDIPITY_SCHEMA), layout.serendipity_path)
    write_parquet_atomic(pa.table(meta, schema=ITEM_META_SCHEMA), layout.item_meta_path)
    write_parquet_atomic(pa.table(history, schema=USER_HISTORY_SCHEMA), layout.user_history_path)
    return 2 * items + users

"""The data contract: every table's columns, Arrow schemas, and the names shared across stages.

A dataset is a directory holding ``clusters.parquet``, ``items.parquet`` and
``interactions.parquet`` plus media files referenced by relative paths. Every later stage
reads and writes the tables below; column and feature names live here once.
"""

from __future__ import annotations

import pyarrow as pa

NUM_LEVELS = 4
LEVEL_COLUMNS: tuple[str, ...] = tuple(f"c{level}" for level in range(1, NUM_LEVELS + 1))

CLUSTERS_FILE = "clusters.parquet"
ITEMS_FILE = "items.parquet"
INTERACTIONS_FILE = "interactions.parquet"
DATASET_FILES: tuple[str, ...] = (CLUSTERS_FILE, ITEMS_FILE, INTERACTIONS_FILE)
# Optional marker written next to the tables when the tree is a placeholder (no real hierarchy).
TREE_INFO_FILE = "tree_info.json"

# --- source tables (the contract) -------------------------------------------------------------

CLUSTERS_SCHEMA = pa.schema(
    [
        pa.field("cluster_id", pa.int64(), nullable=False),
        pa.field("level", pa.int8(), nullable=False),
        pa.field("parent_id", pa.int64(), nullable=True),
        pa.field("description", pa.string(), nullable=False),
    ]
)

ITEMS_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.int64(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=True),
        pa.field("thumbnail_path", pa.string(), nullable=True),
        pa.field("video_path", pa.string(), nullable=True),
        *[pa.field(col, pa.int64(), nullable=False) for col in LEVEL_COLUMNS],
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)

INTERACTIONS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("item_id", pa.int64(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("satisfaction", pa.float64(), nullable=False),
        pa.field("impression", pa.bool_(), nullable=True),
        pa.field("source", pa.string(), nullable=True),
    ]
)

# Columns a file must have; the rest of its schema is optional.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    CLUSTERS_FILE: ("cluster_id", "level", "parent_id", "description"),
    ITEMS_FILE: ("item_id", "title", *LEVEL_COLUMNS, "created_at"),
    INTERACTIONS_FILE: ("user_id", "item_id", "ts", "satisfaction"),
}
SCHEMAS: dict[str, pa.Schema] = {
    CLUSTERS_FILE: CLUSTERS_SCHEMA,
    ITEMS_FILE: ITEMS_SCHEMA,
    INTERACTIONS_FILE: INTERACTIONS_SCHEMA,
}

# --- quarantine ------------------------------------------------------------------------------
# Unusable rows keep every original column (as written) plus where and why they were set aside.
QUARANTINE_REASON = "_reason"
QUARANTINE_COLUMN = "_column"
QUARANTINE_SOURCE = "_source_file"
QUARANTINE_ROW = "_row_number"

# --- derived tables (stage outputs) ------------------------------------------------------------

# Consecutive engagement pairs (aggregates / pairs jobs).
PAIRS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.int64()),
        pa.field("context_item_id", pa.int64()),
        pa.field("next_item_id", pa.int64()),
        pa.field("context_cluster", pa.int64()),  # level L of the context item
        pa.field("next_cluster", pa.int64()),  # level L of the next item
        pa.field("parent_cluster", pa.int64()),  # shared level L-1 cluster
        pa.field("satisfaction", pa.float64()),
        pa.field("ts", pa.timestamp("us", tz="UTC")),
    ]
)

# s(v, c): aggregated satisfaction of context item v towards next-cluster c.
CONTEXT_CLUSTER_SCORES_SCHEMA = pa.schema(
    [
        pa.field("context_item_id", pa.int64()),
        pa.field("next_cluster", pa.int64()),
        pa.field("support", pa.int64()),
        pa.field("mean_satisfaction", pa.float64()),
        pa.field("score", pa.float64()),  # smoothed s(v, c)
    ]
)

SPLIT_TRAIN = "train"
SPLIT_CALIBRATION = "calibration"  # later pairs: fit the nominator's prior weight, never judged by the gate
SPLIT_VALIDATION = "validation"  # the latest pairs: what the publish gate judges
SPLITS: tuple[str, ...] = (SPLIT_TRAIN, SPLIT_CALIBRATION, SPLIT_VALIDATION)

# The logged transition prior (training-period serendipitous pairs, satisfaction-weighted).
CLUSTER_PRIOR_SCHEMA = pa.schema(
    [
        pa.field("context_cluster", pa.int64()),
        pa.field("next_cluster", pa.int64()),  # every sibling of context_cluster, logged or not
        pa.field("weight", pa.float64()),  # summed satisfaction of the logged transitions
        pa.field("probability", pa.float64()),  # (weight + smoothing) / (total + smoothing * siblings)
    ]
)
ITEM_PRIOR_SCHEMA = pa.schema(
    [
        pa.field("context_item_id", pa.int64()),
        pa.field("context_cluster", pa.int64()),
        pa.field("next_cluster", pa.int64()),
        pa.field("weight", pa.float64()),
        pa.field("probability", pa.float64()),  # (weight + beta * cluster prior) / (total + beta)
    ]
)

# The curated fine-tuning set: one row per (context item, target cluster) example.
SFT_SCHEMA = pa.schema(
    [
        pa.field("context_item_id", pa.int64()),
        pa.field("target_cluster", pa.int64()),
        pa.field("score", pa.float64()),
        pa.field("rank", pa.int32()),  # rank of the context item within the target cluster
        pa.field("split", pa.string()),  # one of SPLITS
    ]
)

# The popular corpus fed to batch inference.
CORPUS_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.int64()),
        pa.field("impressions", pa.int64()),
        pa.field("cumulative_share", pa.float64()),
    ]
)

# --- feature store names -----------------------------------------------------------------------
ITEM_ENTITY = "item"
USER_ENTITY = "user"
ITEM_JOIN_KEY = "item_id"
USER_JOIN_KEY = "user_id"
ITEM_SERENDIPITY_VIEW = "item_serendipity"
USER_HISTORY_VIEW = "user_history"
ITEM_META_VIEW = "item_meta"
SERVING_FEATURE_SERVICE = "serendipity_serving"
SERENDIPITOUS_CLUSTER_FEATURE = "serendipitous_cluster"
SERENDIPITOUS_DESCRIPTION_FEATURE = "serendipitous_description"
REASONING_FEATURE = "reasoning"
EVENT_TIMESTAMP = "event_timestamp"
RECENT_ITEMS_FEATURE = "recent_item_ids"  # user_history: engaged item ids, newest first
IMPRESSIONS_FEATURE = "impressions"  # item_meta: impressions up to the snapshot
# item_serendipity: the MLLM's pick for a context item and its companions
SERENDIPITOUS_DESCRIPTION_FEATURE = "serendipitous_description"
SERENDIPITY_SCORE_FEATURE = "score"
ALTERNATIVES_FEATURE = "alternatives"  # every cluster the answer names, best first
REASONING_FEATURE = "reasoning"
MODEL_VERSION_FEATURE = "model_version"
ALTERNATIVE_SCORES_COLUMN = "alternative_scores"
MEDIA_FALLBACK_COLUMN = "media_fallback"  # the item's media could not be decoded; text stood in
PROMPT_STYLE_COLUMN = "prompt_style"

# Batch-inference output: the Feast source of serendipitous_cluster(context_item).
SERENDIPITY_SCHEMA = pa.schema(
    [
        pa.field(ITEM_JOIN_KEY, pa.int64()),
        pa.field(SERENDIPITOUS_CLUSTER_FEATURE, pa.int64()),
        pa.field(SERENDIPITOUS_DESCRIPTION_FEATURE, pa.string()),
        pa.field(SERENDIPITY_SCORE_FEATURE, pa.float64()),
        pa.field(ALTERNATIVES_FEATURE, pa.list_(pa.int64())),
        pa.field(ALTERNATIVE_SCORES_COLUMN, pa.list_(pa.float64())),
        pa.field(REASONING_FEATURE, pa.string()),
        pa.field(MEDIA_FALLBACK_COLUMN, pa.bool_()),
        pa.field(MODEL_VERSION_FEATURE, pa.string()),
        pa.field(PROMPT_STYLE_COLUMN, pa.string()),
        pa.field(EVENT_TIMESTAMP, pa.timestamp("us", tz="UTC")),
    ]
)

# Batch-inference bookkeeping beside the output: which (item, content, model) are done, and failures.
CONTENT_HASH_COLUMN = "content_hash"
ERROR_REASON_COLUMN = "reason"
INFERENCE_MANIFEST_SCHEMA = pa.schema(
    [
        pa.field(ITEM_JOIN_KEY, pa.int64()),
        pa.field(CONTENT_HASH_COLUMN, pa.string()),
        pa.field(MODEL_VERSION_FEATURE, pa.string()),
    ]
)
INFERENCE_ERRORS_SCHEMA = pa.schema(
    [
        *INFERENCE_MANIFEST_SCHEMA,
        pa.field(ERROR_REASON_COLUMN, pa.string()),
        pa.field(EVENT_TIMESTAMP, pa.timestamp("us", tz="UTC")),
    ]
)

# Feast sources computed by spark_jobs/user_history.py: one row per (entity, snapshot time).
USER_HISTORY_SCHEMA = pa.schema(
    [
        pa.field(USER_JOIN_KEY, pa.int64()),
        pa.field(RECENT_ITEMS_FEATURE, pa.list_(pa.int64())),
        pa.field(EVENT_TIMESTAMP, pa.timestamp("us", tz="UTC")),
    ]
)
ITEM_META_SCHEMA = pa.schema(
    [
        pa.field(ITEM_JOIN_KEY, pa.int64()),
        *[pa.field(col, pa.int64()) for col in LEVEL_COLUMNS],
        pa.field(IMPRESSIONS_FEATURE, pa.int64()),
        pa.field(EVENT_TIMESTAMP, pa.timestamp("us", tz="UTC")),
    ]
)


def level_column(level: int) -> str:
    """Name of the items column holding an item's cluster id at ``level`` (1-based)."""
    if not 1 <= level <= NUM_LEVELS:
        raise ValueError(f"level must be in 1..{NUM_LEVELS}, got {level}")
    return LEVEL_COLUMNS[level - 1]

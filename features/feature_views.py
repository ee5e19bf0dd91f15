"""Feast feature views: serendipity of a context item, a user's recent history, an item's metadata."""

from __future__ import annotations

from datetime import timedelta

from feast import FeatureView, Field
from feast.data_source import DataSource
from feast.types import Array, Float64, Int64, String

from features.entities import item, user
from serendipity.config import FeaturesConfig
from serendipity.schema import (
    IMPRESSIONS_FEATURE,
    ITEM_META_VIEW,
    ITEM_SERENDIPITY_VIEW,
    LEVEL_COLUMNS,
    RECENT_ITEMS_FEATURE,
    SERENDIPITOUS_CLUSTER_FEATURE,
    USER_HISTORY_VIEW,
)


def item_serendipity_view(source: DataSource, features: FeaturesConfig) -> FeatureView:
    """serendipitous_cluster(context_item) and its companions; expires after serendipity_ttl_days."""
    return FeatureView(
        name=ITEM_SERENDIPITY_VIEW,
        entities=[item],
        ttl=timedelta(days=features.serendipity_ttl_days),
        schema=[
            Field(name=SERENDIPITOUS_CLUSTER_FEATURE, dtype=Int64),
            Field(name="serendipitous_description", dtype=String),
            Field(name="score", dtype=Float64),
            Field(name="alternatives", dtype=Array(Int64)),
            Field(name="model_version", dtype=String),
            Field(name="reasoning", dtype=String),
        ],
        source=source,
        online=True,
        description="The nearby-but-unexplored cluster the fine-tuned MLLM picks for a context item.",
    )


def user_history_view(source: DataSource, features: FeaturesConfig) -> FeatureView:
    return FeatureView(
        name=USER_HISTORY_VIEW,
        entities=[user],
        ttl=timedelta(days=features.history_ttl_days),
        schema=[Field(name=RECENT_ITEMS_FEATURE, dtype=Array(Int64))],
        source=source,
        online=True,
        description=f"The user's last {features.history_length} engaged item ids, newest first.",
    )


def item_meta_view(source: DataSource, features: FeaturesConfig) -> FeatureView:
    return FeatureView(
        name=ITEM_META_VIEW,
        entities=[item],
        ttl=timedelta(days=features.item_meta_ttl_days),
        schema=[
            *[Field(name=column, dtype=Int64) for column in LEVEL_COLUMNS],
            Field(name=IMPRESSIONS_FEATURE, dtype=Int64),
        ],
        source=source,
        online=True,
        description="The item's cluster path (c1..c4) and its impressions up to the snapshot.",
    )

"""Feast feature views: serendipity of a context item, a user's recent history, an item's metadata."""

from __future__ import annotations

from datetime import timedelta

from feast import FeatureView, Field
from feast.data_source import DataSource
from feast.types import Array, Float64, Int64, String

from features.entities import item, user
from serendipity.config import FeaturesConfig
from serendipity.schema import (
    ALTERNATIVES_FEATURE,
    IMPRESSIONS_FEATURE,
    ITEM_META_VIEW,
    ITEM_SERENDIPITY_VIEW,
    LEVEL_COLUMNS,
    MODEL_VERSION_FEATURE,
    REASONING_FEATURE,
    RECENT_ITEMS_FEATURE,
    SERENDIPITOUS_CLUSTER_FEATURE,
    SERENDIPITOUS_DESCRIPTION_FEATURE,
    SERENDIPITY_SCORE_FEATURE,
    USER_HISTORY_VIEW,
)


def item_serendipity_view(source: DataSource, settings: FeaturesConfig) -> FeatureView:
    """serendipitous_cluster(context_item) and its companions; expires after serendipity_ttl_days."""
    return FeatureView(
        name=ITEM_SERENDIPITY_VIEW,
        entities=[item],
        ttl=timedelta(days=settings.serendipity_ttl_days),
        schema=[
            Field(name=SERENDIPITOUS_CLUSTER_FEATURE, dtype=Int64),
            Field(name=SERENDIPITOUS_DESCRIPTION_FEATURE, dtype=String),
            Field(name=SERENDIPITY_SCORE_FEATURE, dtype=Float64),
            Field(name=ALTERNATIVES_FEATURE, dtype=Array(Int64)),
            Field(name=MODEL_VERSION_FEATURE, dtype=String),
            Field(name=REASONING_FEATURE, dtype=String),
        ],
        source=source,
        online=True,
        description="The nearby-but-unexplored cluster the fine-tuned MLLM picks for a context item.",
    )


def user_history_view(source: DataSource, settings: FeaturesConfig) -> FeatureView:
    return FeatureView(
        name=USER_HISTORY_VIEW,
        entities=[user],
        ttl=timedelta(days=settings.history_ttl_days),
        schema=[Field(name=RECENT_ITEMS_FEATURE, dtype=Array(Int64))],
        source=source,
        online=True,
        description=f"The user's last {settings.history_length} engaged item ids, newest first.",
    )


def item_meta_view(source: DataSource, settings: FeaturesConfig) -> FeatureView:
    return FeatureView(
        name=ITEM_META_VIEW,
        entities=[item],
        ttl=timedelta(days=settings.item_meta_ttl_days),
        schema=[
            *[Field(name=column, dtype=Int64) for column in LEVEL_COLUMNS],
            Field(name=IMPRESSIONS_FEATURE, dtype=Int64),
        ],
        source=source,
        online=True,
        description="The item's cluster path (c1..c4) and its impressions up to the snapshot.",
    )

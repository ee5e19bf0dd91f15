"""Daily snapshots for the Feast sources: users' recent engaged items, items' cluster path and popularity.

One row per (user, day with engaged activity) and per (item, day with impressions), stamped with the
day's last event time, so a point-in-time join at time t only sees events at or before t.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from serendipity.schema import (
    EVENT_TIMESTAMP,
    IMPRESSIONS_FEATURE,
    ITEM_JOIN_KEY,
    LEVEL_COLUMNS,
    RECENT_ITEMS_FEATURE,
    USER_JOIN_KEY,
)
from spark_jobs.mining import shown_interactions

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def user_history_snapshots(interactions: DataFrame, engaged_above: float, history_length: int) -> DataFrame:
    """(user_id, recent_item_ids newest first, event_timestamp) at each user's last engaged event per day.

    Events are ordered by ts, then item_id; "engaged" means satisfaction above ``engaged_above``.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    engaged = interactions.where(F.col("satisfaction") > F.lit(engaged_above)).select(
        "user_id", "item_id", "ts"
    )
    by_time = Window.partitionBy("user_id").orderBy("ts", "item_id")
    # Position and history share one ordering, so exact ties (same ts and item) cannot split them.
    with_history = engaged.withColumn("_position", F.row_number().over(by_time)).withColumn(
        "_history", F.collect_list("item_id").over(by_time.rowsBetween(1 - history_length, 0))
    )
    day = Window.partitionBy("user_id", F.to_date("ts"))
    return (
        with_history.withColumn("_last", F.max("_position").over(day))
        .where(F.col("_position") == F.col("_last"))
        .select(
            F.col("user_id").cast("bigint").alias(USER_JOIN_KEY),
            F.reverse("_history").cast("array<bigint>").alias(RECENT_ITEMS_FEATURE),
            F.col("ts").alias(EVENT_TIMESTAMP),
        )
    )


def item_meta_snapshots(items: DataFrame, interactions: DataFrame) -> DataFrame:
    """(item_id, c1..c4, impressions, event_timestamp): a row at creation with 0 impressions, then one
    per day with impressions, holding the cumulative count up to that day's last impression.

    An interaction counts as an impression unless its ``impression`` column is false.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    up_to_day = Window.partitionBy("item_id").orderBy("_day").rowsBetween(Window.unboundedPreceding, 0)
    daily = (
        shown_interactions(interactions)
        .groupBy("item_id", F.to_date("ts").alias("_day"))
        .agg(F.count(F.lit(1)).alias("_count"), F.max("ts").alias("ts"))
        .select("item_id", "ts", F.sum("_count").over(up_to_day).alias(IMPRESSIONS_FEATURE))
    )
    created = items.select("item_id", F.col("created_at").alias("ts"), F.lit(0).alias(IMPRESSIONS_FEATURE))
    snapshots = (
        daily.unionByName(created)
        .groupBy("item_id", "ts")
        .agg(F.max(IMPRESSIONS_FEATURE).alias(IMPRESSIONS_FEATURE))
    )
    return snapshots.join(items.select("item_id", *LEVEL_COLUMNS), "item_id", "inner").select(
        F.col("item_id").cast("bigint").alias(ITEM_JOIN_KEY),
        *[F.col(column).cast("bigint").alias(column) for column in LEVEL_COLUMNS],
        F.col(IMPRESSIONS_FEATURE).cast("bigint").alias(IMPRESSIONS_FEATURE),
        F.col("ts").alias(EVENT_TIMESTAMP),
    )

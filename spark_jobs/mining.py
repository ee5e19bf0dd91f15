"""Typed DataFrame -> DataFrame transforms of the mining chain (aggregates, pairs, curate, corpus).

Pair classes at mining level L: ``similar`` (same cluster at L), ``serendipitous`` (different at L,
same at L-1), ``distant`` (different at L-1 too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from serendipity.schema import SPLIT_TRAIN, SPLIT_VALIDATION, level_column

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

SIMILAR = "similar"
SERENDIPITOUS = "serendipitous"
DISTANT = "distant"
PAIR_CLASSES: tuple[str, ...] = (SIMILAR, SERENDIPITOUS, DISTANT)
NORMAL_95_Z = 1.959963984540054  # two-sided 95% quantile of the standard normal

# Sums of satisfaction are exact (decimal) so that equal scores stay equal whatever the row order.
EXACT_SUM_TYPE = "decimal(38,18)"

RATE_COLUMNS: tuple[str, ...] = ("count", "mean_satisfaction", "std_satisfaction", "ci_low", "ci_high")
OVERALL_RATES_SCHEMA = pa.schema(
    [
        pa.field("pair_class", pa.string()),
        pa.field("count", pa.int64()),
        pa.field("mean_satisfaction", pa.float64()),
        pa.field("std_satisfaction", pa.float64()),
        pa.field("ci_low", pa.float64()),
        pa.field("ci_high", pa.float64()),
    ]
)
PER_CLUSTER_RATES_SCHEMA = pa.schema([pa.field("context_parent_cluster", pa.int64()), *OVERALL_RATES_SCHEMA])
DESCRIPTIONS_COLUMNS: tuple[str, ...] = ("cluster_id", "level", "parent_id", "description")


# --- consecutive pairs ---------------------------------------------------------------------------
def consecutive_pairs(
    interactions: DataFrame, items: DataFrame, level: int, session_gap_minutes: float
) -> DataFrame:
    """Each interaction followed by the same user's next one within the session gap, classified.

    A user's interactions are ordered by ``ts``, then ``item_id``, then ``satisfaction``. Pairs whose
    items are absent from the catalog are dropped (the validate job quarantines such rows).
    Columns: user_id, context_item_id, next_item_id, context_cluster, next_cluster,
    context_parent_cluster, next_parent_cluster, satisfaction (of the next item), ts (of the next
    interaction), pair_class.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    gap_micros = round(session_gap_minutes * 60 * 1_000_000)
    order = Window.partitionBy("user_id").orderBy("ts", "item_id", "satisfaction")
    events = interactions.select("user_id", "item_id", "ts", "satisfaction")
    followed = (
        events.withColumn("next_item_id", F.lead("item_id").over(order))
        .withColumn("next_ts", F.lead("ts").over(order))
        .withColumn("next_satisfaction", F.lead("satisfaction").over(order))
        .where(F.col("next_item_id").isNotNull())
        .where(F.unix_micros("next_ts") - F.unix_micros("ts") <= F.lit(gap_micros))
    )
    fine, parent = level_column(level), level_column(level - 1)
    context = items.select(
        F.col("item_id").alias("context_item_id"),
        F.col(fine).alias("context_cluster"),
        F.col(parent).alias("context_parent_cluster"),
    )
    following = items.select(
        F.col("item_id").alias("next_item_id"),
        F.col(fine).alias("next_cluster"),
        F.col(parent).alias("next_parent_cluster"),
    )
    pairs = (
        followed.select(
            "user_id",
            F.col("item_id").alias("context_item_id"),
            "next_item_id",
            F.col("next_satisfaction").alias("satisfaction"),
            F.col("next_ts").alias("ts"),
        )
        .join(context, "context_item_id")
        .join(following, "next_item_id")
    )
    return pairs.withColumn("pair_class", pair_class(pairs))


def pair_class(pairs: DataFrame) -> Column:
    from pyspark.sql import functions as F

    return (
        F.when(pairs.context_cluster == pairs.next_cluster, F.lit(SIMILAR))
        .when(pairs.context_parent_cluster == pairs.next_parent_cluster, F.lit(SERENDIPITOUS))
        .otherwise(F.lit(DISTANT))
    )


# --- satisfaction rates --------------------------------------------------------------------------
def satisfaction_rates(pairs: DataFrame, group_columns: list[str]) -> DataFrame:
    """Count, mean, sample std and normal-approximation 95% CI of satisfaction per group."""
    from pyspark.sql import functions as F

    stats = pairs.groupBy(*group_columns).agg(
        F.count(F.lit(1)).alias("count"),
        F.avg("satisfaction").alias("mean_satisfaction"),
        F.stddev_samp("satisfaction").alias("std_satisfaction"),
    )
    half_width = F.lit(NORMAL_95_Z) * F.col("std_satisfaction") / F.sqrt(F.col("count").cast("double"))
    return stats.withColumn("ci_low", F.col("mean_satisfaction") - half_width).withColumn(
        "ci_high", F.col("mean_satisfaction") + half_width
    )


# --- serendipitous pairs and s(v, c) -------------------------------------------------------------
def serendipitous_pairs(pairs: DataFrame) -> DataFrame:
    """The serendipitous pairs, with ``parent_cluster`` the shared level L-1 cluster."""
    from pyspark.sql import functions as F

    return pairs.where(F.col("pair_class") == SERENDIPITOUS).withColumn(
        "parent_cluster", F.col("context_parent_cluster")
    )


def context_cluster_scores(pairs: DataFrame, smoothing: float, min_support: int) -> DataFrame:
    """s(v, c) = (sum + smoothing * global_mean) / (n + smoothing), kept where n >= min_support."""
    from pyspark.sql import functions as F

    exact = F.col("satisfaction").cast(EXACT_SUM_TYPE)
    totals = pairs.agg(F.sum(exact).cast("double").alias("total"), F.count(F.lit(1)).alias("n")).first()
    global_mean = totals["total"] / totals["n"] if totals and totals["n"] else 0.0
    grouped = pairs.groupBy("context_item_id", "next_cluster").agg(
        F.count(F.lit(1)).alias("support"), F.sum(exact).cast("double").alias("total")
    )
    support = F.col("support").cast("double")
    return (
        grouped.where(F.col("support") >= min_support)
        .withColumn("mean_satisfaction", F.col("total") / support)
        .withColumn("score", (F.col("total") + F.lit(smoothing * global_mean)) / (support + F.lit(smoothing)))
        .drop("total")
    )


# --- diversified curation ------------------------------------------------------------------------
def top_context_items_per_cluster(scores: DataFrame, top_k: int) -> DataFrame:
    """Top ``top_k`` context items v of each next cluster c by s(v, c); ties: support, then item id."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = Window.partitionBy("next_cluster").orderBy(
        F.col("score").desc(), F.col("support").desc(), F.col("context_item_id").asc()
    )
    return (
        scores.withColumn("rank", F.row_number().over(order))
        .where(F.col("rank") <= top_k)
        .select("context_item_id", F.col("next_cluster").alias("target_cluster"), "score", "rank")
    )


def split_bucket(item_id: Column, seed: int) -> Column:
    """A uniform number in [0, 1) from sha256("{seed}:{item_id}"): the same on every engine and run."""
    from pyspark.sql import functions as F

    digest = F.sha2(F.concat_ws(":", F.lit(str(seed)), item_id.cast("string")), 256)
    return F.conv(F.substring(digest, 1, 8), 16, 10).cast("double") / F.lit(float(2**32))


def assign_split(examples: DataFrame, validation_fraction: float, seed: int) -> DataFrame:
    """Split by context item, so an item's examples all land in the same split."""
    from pyspark.sql import functions as F

    in_validation = split_bucket(F.col("context_item_id"), seed) < F.lit(validation_fraction)
    return examples.withColumn(
        "split", F.when(in_validation, F.lit(SPLIT_VALIDATION)).otherwise(F.lit(SPLIT_TRAIN))
    )


def cluster_descriptions(clusters: DataFrame) -> DataFrame:
    """Every cluster's description, whatever was curated: the model must learn all of them."""
    return clusters.select(*DESCRIPTIONS_COLUMNS)


# --- popular corpus ------------------------------------------------------------------------------
def shown_interactions(interactions: DataFrame) -> DataFrame:
    """The interactions that count as impressions: every row, except rows whose ``impression`` is false."""
    from pyspark.sql import functions as F

    if "impression" not in interactions.columns:
        return interactions
    return interactions.where(F.coalesce(F.col("impression"), F.lit(True)))


def impressions_per_item(interactions: DataFrame) -> DataFrame:
    from pyspark.sql import functions as F

    return shown_interactions(interactions).groupBy("item_id").agg(F.count(F.lit(1)).alias("impressions"))


def popular_corpus(impressions: DataFrame, coverage: float) -> DataFrame:
    """Items by impressions (desc, then item id) until ``coverage`` of all impressions is reached.

    The item whose impressions cross the threshold is included. The running sum is a prefix sum over
    range partitions of the per-item counts: a running sum within each partition plus the summed
    impressions of the partitions before it (one small row per partition reaches the driver).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = (F.col("impressions").desc(), F.col("item_id").asc())
    parts = int(impressions.sparkSession.conf.get("spark.sql.shuffle.partitions") or "8")
    ranged = (
        impressions.repartitionByRange(parts, *order)
        .withColumn("part", F.spark_partition_id())
        .localCheckpoint()
    )
    part_totals = ranged.groupBy("part").agg(F.sum("impressions").alias("part_total")).collect()
    offsets, total = partition_offsets({row["part"]: row["part_total"] for row in part_totals})
    offset_frame = impressions.sparkSession.createDataFrame(list(offsets.items()), "part int, offset long")
    within = Window.partitionBy("part").orderBy(*order).rowsBetween(Window.unboundedPreceding, 0)
    shares = (
        ranged.join(F.broadcast(offset_frame), "part")
        .withColumn("cumulative", F.col("offset") + F.sum("impressions").over(within))
        .withColumn("cumulative_share", F.col("cumulative").cast("double") / F.lit(float(max(total, 1))))
        .withColumn(
            "share_before",
            (F.col("cumulative") - F.col("impressions")).cast("double") / F.lit(float(max(total, 1))),
        )
    )
    return shares.where(F.col("share_before") < F.lit(coverage)).select(
        "item_id", "impressions", "cumulative_share"
    )


def partition_offsets(part_totals: dict[int, int]) -> tuple[dict[int, int], int]:
    """Each range partition's offset (the sum of the partitions before it) and the grand total."""
    offsets, running = {}, 0
    for part in sorted(part_totals):
        offsets[part] = running
        running += int(part_totals[part])
    return offsets, running


def row_fingerprint(df: DataFrame) -> tuple[int, int | None]:
    """Row count and the exact sum of the rows' 64-bit hashes: equal for equal sets of rows, any order."""
    from pyspark.sql import functions as F

    hashed = F.xxhash64(*[F.col(name) for name in df.columns]).cast("decimal(38,0)")
    row = df.agg(F.count(F.lit(1)).alias("rows"), F.sum(hashed).alias("hashes")).first()
    return int(row["rows"]), None if row["hashes"] is None else int(row["hashes"])


def new_items(corpus: DataFrame, known_items: DataFrame) -> DataFrame:
    """The corpus rows whose item is not among ``known_items``'s item ids."""
    return corpus.join(known_items.select("item_id"), "item_id", "left_anti")

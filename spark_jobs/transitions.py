"""Typed DataFrame transforms of the time split and the logged transition prior.

The serendipitous pairs are split by time: the earliest train (fine-tuning, the prior, the guess), the
next ``calibration_fraction`` calibrate the nominator, the latest ``validation_fraction`` are what the
publish gate judges. The prior is P(next cluster | context cluster) from satisfaction-weighted counts
with additive smoothing over the siblings; an item with enough logged transitions of its own gets
P(next cluster | item), shrunk toward its cluster's prior with a strength fitted by empirical Bayes
(the Dirichlet-multinomial marginal likelihood of the items' weighted counts).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from serendipity.nomination.prior import TimeCuts
from serendipity.schema import SPLIT_CALIBRATION, SPLIT_TRAIN, SPLIT_VALIDATION

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

# Candidate shrinkage strengths (pseudo-transitions), log-spaced; the fitted one maximises the likelihood.
SHRINKAGE_GRID: tuple[float, ...] = tuple(float(b) for b in np.logspace(-2, 4, 37))


def _micros(ts: str = "ts") -> Column:
    from pyspark.sql import functions as F

    return F.unix_micros(F.col(ts))


def time_cuts(pairs: DataFrame, calibration_fraction: float, validation_fraction: float) -> TimeCuts:
    """The exact (linearly interpolated) time quantiles of the pairs that end training and calibration."""
    from pyspark.sql import functions as F

    train_share = max(0.0, 1.0 - calibration_fraction - validation_fraction)
    row = pairs.agg(
        F.percentile(_micros(), F.lit(train_share)).alias("train_end"),
        F.percentile(_micros(), F.lit(1.0 - validation_fraction)).alias("calibration_end"),
        F.count(F.lit(1)).alias("pairs"),
    ).first()
    if row is None or not row["pairs"]:
        raise ValueError("no serendipitous pairs to split by time: the pairs job found none")
    return TimeCuts(float(row["train_end"]), float(row["calibration_end"]))


def period(cuts: TimeCuts, ts: str = "ts") -> Column:
    """The split a pair's time falls in."""
    from pyspark.sql import functions as F

    micros = _micros(ts).cast("double")
    return (
        F.when(micros < F.lit(cuts.train_end_micros), F.lit(SPLIT_TRAIN))
        .when(micros < F.lit(cuts.calibration_end_micros), F.lit(SPLIT_CALIBRATION))
        .otherwise(F.lit(SPLIT_VALIDATION))
    )


def sibling_pairs(clusters: DataFrame, level: int) -> DataFrame:
    """(context_cluster, next_cluster): every ordered pair of distinct level-L clusters with one parent."""
    from pyspark.sql import functions as F

    at_level = clusters.where(F.col("level") == level).select("cluster_id", "parent_id")
    left, right = at_level.alias("a"), at_level.alias("b")
    return (
        left.join(right, F.col("a.parent_id") == F.col("b.parent_id"))
        .where(F.col("a.cluster_id") != F.col("b.cluster_id"))
        .select(F.col("a.cluster_id").alias("context_cluster"), F.col("b.cluster_id").alias("next_cluster"))
    )


def _weights(pairs: DataFrame, keys: list[str]) -> DataFrame:
    from pyspark.sql import functions as F

    from spark_jobs.mining import EXACT_SUM_TYPE

    summed = F.sum(F.col("satisfaction").cast(EXACT_SUM_TYPE)).cast("double")
    return pairs.groupBy(*keys).agg(summed.alias("weight"), F.count(F.lit(1)).alias("transitions"))


def cluster_prior(train_pairs: DataFrame, siblings: DataFrame, smoothing: float) -> DataFrame:
    """P(next | context cluster) over every sibling: (weight + smoothing) / (total + smoothing * k)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keys = ["context_cluster", "next_cluster"]
    weights = _weights(train_pairs, keys).select(*keys, "weight")
    by_context = Window.partitionBy("context_cluster")
    return (
        siblings.join(weights, keys, "left")
        .fillna(0.0, subset=["weight"])
        .withColumn(
            "probability",
            (F.col("weight") + F.lit(smoothing))
            / (F.sum("weight").over(by_context) + F.lit(smoothing) * F.count(F.lit(1)).over(by_context)),
        )
    )


def item_evidence(train_pairs: DataFrame, prior: DataFrame, min_transitions: int) -> DataFrame:
    """Per item with at least ``min_transitions`` training transitions: its weight towards every sibling
    of its cluster (0 where it has none), beside the cluster prior's probability of that sibling."""
    from pyspark.sql import functions as F

    per_item = _weights(train_pairs, ["context_item_id", "context_cluster"])
    warm = per_item.where(F.col("transitions") >= min_transitions).select(
        "context_item_id", "context_cluster"
    )
    item_keys = ["context_item_id", "context_cluster", "next_cluster"]
    weights = _weights(train_pairs, item_keys).select(*item_keys, "weight")
    return (
        warm.join(
            prior.select("context_cluster", "next_cluster", F.col("probability").alias("base")),
            "context_cluster",
        )
        .join(weights, item_keys, "left")
        .fillna(0.0, subset=["weight"])
    )


def _log_gamma(values: pd.Series) -> pd.Series:
    from scipy.special import gammaln

    return pd.Series(gammaln(values.to_numpy(dtype=float)))


def shrinkage_log_likelihood(evidence: DataFrame, grid: tuple[float, ...] = SHRINKAGE_GRID) -> DataFrame:
    """(beta, log_likelihood): the Dirichlet-multinomial marginal log-likelihood of every item's weights
    under Dirichlet(beta * cluster prior), for each beta of ``grid`` (weights may be fractional)."""
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    log_gamma = pandas_udf(_log_gamma, "double")  # type: ignore[call-overload]
    spark = evidence.sparkSession
    betas = spark.createDataFrame([(b,) for b in grid], "beta double")
    per_sibling = (
        evidence.crossJoin(betas)
        .withColumn("alpha", F.col("beta") * F.col("base"))
        .select(
            "beta",
            "context_item_id",
            "weight",
            (log_gamma(F.col("weight") + F.col("alpha")) - log_gamma(F.col("alpha"))).alias("term"),
        )
    )
    per_item = per_sibling.groupBy("beta", "context_item_id").agg(
        F.sum("term").alias("terms"), F.sum("weight").alias("total")
    )
    return per_item.groupBy("beta").agg(
        F.sum(F.col("terms") + log_gamma(F.col("beta")) - log_gamma(F.col("beta") + F.col("total"))).alias(
            "log_likelihood"
        )
    )


def best_shrinkage(likelihoods: DataFrame) -> float:
    """The beta of the highest log-likelihood (ties: the smallest beta); the grid's top when no items."""
    rows = sorted((r["beta"], r["log_likelihood"]) for r in likelihoods.collect())
    finite = [(beta, ll) for beta, ll in rows if ll is not None and math.isfinite(ll)]
    if not finite:
        return SHRINKAGE_GRID[-1]
    return max(finite, key=lambda row: (row[1], -row[0]))[0]


def item_prior(evidence: DataFrame, beta: float) -> DataFrame:
    """P(next | item) = (weight + beta * cluster prior) / (item total + beta)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    total = F.sum("weight").over(Window.partitionBy("context_item_id"))
    return evidence.withColumn(
        "probability", (F.col("weight") + F.lit(beta) * F.col("base")) / (total + F.lit(beta))
    )


def holdout_labels(pairs: DataFrame, split: str, smoothing: float, max_items: int, seed: int) -> DataFrame:
    """The held-out examples of one split: per context item of its period, the next cluster(s) of the
    highest s(v, c) over the period's pairs (the score curation ranks training pairs by; ties all kept);
    at most ``max_items`` items, in hash order."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from spark_jobs.mining import context_cluster_scores, split_bucket

    scores = context_cluster_scores(pairs.where(F.col("split") == split), smoothing, 1)
    top = F.max("score").over(Window.partitionBy("context_item_id"))
    labels = scores.withColumn("top", top).where(F.col("score") == F.col("top"))
    items = (
        labels.select("context_item_id")
        .distinct()
        .withColumn("bucket", split_bucket(F.col("context_item_id"), seed))
        .orderBy("bucket", "context_item_id")
        .limit(max_items)
    )
    return labels.join(items, "context_item_id").select(
        "context_item_id",
        F.col("next_cluster").alias("target_cluster"),
        "score",
        F.lit(1).alias("rank"),
        F.lit(split).alias("split"),
    )

"""The (cluster, term) weights that can decide the cluster names, selected per level in Spark.

``describe_levels`` names each cluster from its term weights; all of them is the catalogue's vocabulary
per cluster. Only a few can decide a name (``label_candidates_needed``): a cluster's best single words
in the labelling's own order (over-represented first, then by score), every sibling's weight of those
words (the scores compare siblings) and the word pairs that may widen them. Windows per (parent, term)
and per cluster select those rows, so the driver collects (clusters x a constant) rows, not the data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from serendipity.treebuild.describe import (
    PAIR_COVERAGE,
    SCORE_DECIMALS,
    SMOOTHING,
    label_candidates_needed,
    prefix,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

# Candidates kept beyond the bound, and a looser over-representation test and pair share, so that the
# last-bit differences between Spark's arithmetic and numpy's never drop a row the names need.
EXTRA_CANDIDATES = 8
OVER_SLACK = 1e-9
PAIR_SHARE = PAIR_COVERAGE - 0.05


def cluster_weights(leaves: pd.DataFrame, level: int) -> pd.DataFrame:
    """Per cluster of ``level``: path, parent, its item weight, its siblings' count and summed weight."""
    paths = leaves["path"].map(lambda path: prefix(path, level))
    clusters = leaves.assign(path=paths).groupby("path", as_index=False, sort=True)["weight"].sum()
    clusters["parent"] = clusters["path"].map(lambda path: prefix(path, level - 1))
    by_parent = clusters.groupby("parent")["weight"]
    clusters["siblings_weight"] = by_parent.transform("sum")
    clusters["siblings"] = by_parent.transform("size").astype("int64")
    return clusters.rename(columns={"weight": "cluster_weight"})


def _score(level: int) -> Column:
    """``describe``'s score: coverage at level 1, class-based TF-IDF among the siblings deeper."""
    from pyspark.sql import functions as F

    coverage = F.col("coverage")
    if level == 1:
        return coverage
    average = F.col("siblings_weight") / F.col("siblings")
    return coverage * F.log1p(average / F.greatest(F.col("carrying"), F.lit(1e-12)))


def naming_terms(leaf_terms: DataFrame, leaves: pd.DataFrame, level: int, terms_per_label: int) -> DataFrame:
    """The rows (path, term, weight) of ``level``'s clusters that can decide their names."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    clusters = cluster_weights(leaves, level)
    siblings = int(clusters["siblings"].max())
    keep = 2 * label_candidates_needed(level, siblings, terms_per_label) + EXTRA_CANDIDATES
    spark: SparkSession = leaf_terms.sparkSession
    terms = leaf_terms.groupBy(F.substring_index("path", ".", level).alias("path"), "term").agg(
        F.sum("weight").alias("weight")
    )
    scored = (
        terms.join(F.broadcast(spark.createDataFrame(clusters)), "path")
        .withColumn("carrying", F.sum("weight").over(Window.partitionBy("parent", "term")))
        .withColumn("coverage", F.col("weight") / F.greatest("cluster_weight", F.lit(1e-12)))
        .localCheckpoint()
    )
    together = F.col("carrying") / F.greatest("siblings_weight", F.lit(1e-12))
    words = (
        scored.filter(~F.col("term").contains(" "))
        .withColumn("score", F.round(_score(level), SCORE_DECIMALS))
        .withColumn("over", F.col("coverage") > together + F.lit(SMOOTHING - OVER_SLACK))
    )
    best_first = [F.desc("score"), F.asc("term")]
    ranked = words.withColumn(
        "rank", F.row_number().over(Window.partitionBy("path").orderBy(*best_first))
    ).withColumn("rank_over", F.row_number().over(Window.partitionBy("path", "over").orderBy(*best_first)))
    chosen = ranked.filter((F.col("rank") <= keep) | (F.col("over") & (F.col("rank_over") <= keep)))
    siblings_rows = scored.join(chosen.select("parent", "term").distinct(), ["parent", "term"])
    parts = chosen.select("path", F.col("term").alias("part"), F.col("weight").alias("part_weight"))
    pairs = (
        scored.filter(F.col("term").contains(" "))
        .withColumn("part", F.explode(F.split("term", " ")))
        .join(parts, ["path", "part"])
        .filter(F.col("weight") >= F.lit(PAIR_SHARE) * F.col("part_weight"))
    )
    columns = ["path", "term", "weight"]
    return siblings_rows.select(*columns).unionByName(pairs.select(*columns)).distinct()


def collect_naming_terms(
    leaf_terms: DataFrame, leaves: pd.DataFrame, num_levels: int, terms_per_label: int
) -> dict[int, pd.DataFrame]:
    """:func:`naming_terms` of every level, collected at once (bounded by the tree's size)."""
    from pyspark.sql import functions as F

    leaf_terms = leaf_terms.localCheckpoint()
    frames = [
        naming_terms(leaf_terms, leaves, level, terms_per_label).withColumn("level", F.lit(level))
        for level in range(1, num_levels + 1)
    ]
    union = frames[0]
    for frame in frames[1:]:
        union = union.unionByName(frame)
    collected = union.toPandas()
    return {
        level: collected[collected["level"] == level].drop(columns="level").reset_index(drop=True)
        for level in range(1, num_levels + 1)
    }

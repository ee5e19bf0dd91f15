"""Build a 4-level traffic-balanced, described cluster tree for a dataset that lacks one.

Reads items + interactions (``WorkLayout.validated_dir``, else ``dataset_dir``); writes
``WorkLayout.tree_dir`` = clusters.parquet, items.parquet (new c1..c4), balance.json, tree_info.json.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow.parquet as pq

from serendipity.config import TreeBuildConfig
from serendipity.io import atomic_directory, write_json_atomic
from serendipity.layout import WorkLayout
from serendipity.schema import (
    CLUSTERS_FILE,
    INTERACTIONS_FILE,
    ITEMS_FILE,
    ITEMS_SCHEMA,
    LEVEL_COLUMNS,
    TREE_INFO_FILE,
)
from serendipity.treebuild import balance_report, cluster_ids, clusters_table, describe_tree, leaf_levels
from serendipity.treebuild.balanced import split_parent_group
from serendipity.treebuild.describe import leaf_summary, leaf_term_weight_batches
from serendipity.treebuild.embed import embed_item_batches
from serendipity.treebuild.tables import format_balance
from spark_jobs.common import get_spark, job_arg_parser, load_job_config
from spark_jobs.mining import conform, read_parquet, write_job_stats

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

BALANCE_FILE = "balance.json"
EMBEDDED_SCHEMA = "item_id long, text_embedding array<float>, image_embedding array<float>, has_image boolean"
MEDIA_COLUMNS = ("text", "thumbnail_path")
ITEM_INPUTS = ("item_id", "title", "created_at")


def require_columns(df: DataFrame, path: Path, columns: tuple[str, ...]) -> DataFrame:
    missing = [name for name in columns if name not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing} needed to build the tree; has {df.columns}")
    return df


def with_traffic(items: DataFrame, interactions: DataFrame) -> DataFrame:
    """Items with ``traffic`` = their number of interactions (0 when none) and optional columns filled."""
    from pyspark.sql import functions as F

    for name in MEDIA_COLUMNS:
        if name not in items.columns:
            items = items.withColumn(name, F.lit(None).cast("string"))
    counts = interactions.groupBy("item_id").agg(F.count(F.lit(1)).cast("double").alias("traffic"))
    return items.join(counts, "item_id", "left").fillna(0.0, subset=["traffic"])


def embed(items: DataFrame, tree: TreeBuildConfig, media_roots: list[Path]) -> DataFrame:
    """Item embeddings computed on the executors (mapInPandas), one model load per Python worker."""
    batches = functools.partial(
        embed_item_batches,
        media_roots=media_roots,
        batch_size=tree.embed_batch_size,
        num_threads=tree.embed_threads,
    )
    parallelism = items.sparkSession.sparkContext.defaultParallelism
    columns = items.select("item_id", "title", "text", "thumbnail_path").repartition(parallelism, "item_id")
    embedded = columns.mapInPandas(batches, EMBEDDED_SCHEMA)
    return embedded.join(items.select("item_id", "traffic"), "item_id")


def splitter(branching: int, tree: TreeBuildConfig) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """The one-argument applyInPandas function splitting a parent group into ``branching`` children."""

    def split(group: pd.DataFrame) -> pd.DataFrame:
        return split_parent_group(
            group,
            branching,
            seed=tree.seed,
            image_weight=tree.image_weight,
            tolerance=tree.balance_tolerance,
            iterations=tree.refine_iterations,
        )

    return split


def assign_levels(embedded: DataFrame, tree: TreeBuildConfig) -> DataFrame:
    """Top-down balanced splits, one groupBy(parent path).applyInPandas per level; adds ``path``."""
    from pyspark.sql import functions as F

    current = embedded.withColumn("path", F.lit(""))
    for branching in tree.branching:
        split = splitter(branching, tree)
        current = current.groupBy("path").applyInPandas(split, current.schema).localCheckpoint()
    return current.select("item_id", "path", "traffic")


def describe(
    items: DataFrame, placed: DataFrame, tree: TreeBuildConfig
) -> tuple[dict[str, str], pd.DataFrame]:
    """Cluster descriptions (per path) and per-leaf summaries, from aggregated term weights only."""
    from pyspark.sql import functions as F

    documents = items.select("item_id", F.concat_ws(". ", "title", "text").alias("document"))
    joined = placed.join(documents, "item_id")
    term_weights = (
        joined.select("path", "traffic", "document")
        .mapInPandas(leaf_term_weight_batches, "path string, term string, weight double")
        .groupBy("path", "term")
        .agg(F.sum("weight").alias("weight"))
        .toPandas()
    )
    leaves = (
        placed.select("path", "traffic")
        .groupBy("path")
        .applyInPandas(leaf_summary, "path string, weight double, traffic double, items long")
        .toPandas()
    )
    return describe_tree(term_weights, leaves, len(tree.branching), tree.terms_per_label), leaves


def main(argv: list[str] | None = None) -> None:
    args = job_arg_parser(__doc__.splitlines()[0]).parse_args(argv)
    config = load_job_config(args)
    layout = WorkLayout.of(config)
    input_dir = layout.validated_dir if layout.validated_dir.exists() else config.dataset_dir
    spark = get_spark(config.spark)
    items = require_columns(
        read_parquet(spark, input_dir / ITEMS_FILE, "items"), input_dir / ITEMS_FILE, ITEM_INPUTS
    )
    interactions = require_columns(
        read_parquet(spark, input_dir / INTERACTIONS_FILE, "interactions"),
        input_dir / INTERACTIONS_FILE,
        ("item_id",),
    )
    items = with_traffic(items, interactions).localCheckpoint()
    if items.isEmpty():
        raise ValueError(f"{input_dir / ITEMS_FILE}: no items to build a tree from")

    embedded = embed(
        items, config.tree, list(dict.fromkeys([input_dir, config.dataset_dir]))
    ).localCheckpoint()
    placed = assign_levels(embedded, config.tree)
    descriptions, leaves = describe(items, placed, config.tree)
    ids = cluster_ids(list(leaves["path"]))
    levels = spark.createDataFrame(leaf_levels(ids))
    tree_items = items.drop(*LEVEL_COLUMNS).join(placed.select("item_id", "path"), "item_id")
    tree_items = tree_items.join(levels.withColumnRenamed("leaf_path", "path"), "path")
    tree_items = conform(tree_items, ITEMS_SCHEMA).repartition(1).sortWithinPartitions("item_id")
    report = balance_report(leaves[["path", "traffic"]])

    with atomic_directory(layout.tree_dir) as staging:
        tree_items.write.parquet(str(staging / ITEMS_FILE))
        pq.write_table(clusters_table(ids, descriptions), staging / CLUSTERS_FILE)
        write_json_atomic(report, staging / BALANCE_FILE)
        write_json_atomic(
            {"placeholder": False, "built_by": "build_tree", **config.tree.model_dump()},
            staging / TREE_INFO_FILE,
        )
    with_images = embedded.filter("has_image").count()
    write_job_stats(
        layout,
        "build_tree",
        inputs={"items": items.count(), "interactions": interactions.count()},
        outputs={
            "items": int(leaves["items"].sum()),
            "clusters": len(ids),
            "items_with_thumbnail": with_images,
        },
    )
    print(format_balance(report))


if __name__ == "__main__":
    main()

"""DataFrame steps of the build_tree job: traffic, embeddings on the executors, balanced splits, labels."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from serendipity.config import TreeBuildConfig
from serendipity.schema import INTERACTIONS_FILE, ITEMS_FILE, ITEMS_SCHEMA, LEVEL_COLUMNS
from serendipity.treebuild import (
    balance_report,
    cluster_ids,
    clusters_table,
    leaf_levels,
    name_quality,
)
from serendipity.treebuild.balanced import splitter
from serendipity.treebuild.describe import describe_levels, leaf_summary, leaf_term_weight_batches
from serendipity.treebuild.embed import embed_item_batches, embed_texts
from serendipity.treebuild.quality import NameQuality
from serendipity.treebuild.tables import BalanceReport
from spark_jobs.common import conform, read_parquet
from spark_jobs.tree_terms import collect_naming_terms

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

EMBEDDED_SCHEMA = "item_id long, text_embedding array<float>, image_embedding array<float>, has_image boolean"
MEDIA_COLUMNS = ("text", "thumbnail_path")
ITEM_INPUTS = ("item_id", "title", "created_at")
NAME_QUALITY_ITEMS = 50_000  # items whose texts measure the names (all of them in smaller catalogues)


@dataclass(frozen=True)
class BuiltTree:
    """The tree's items (with new c1..c4), its clusters table, the traffic balance and a few counts."""

    items: DataFrame
    clusters: pa.Table
    balance: BalanceReport
    placed_items: int
    items_with_thumbnail: int
    name_quality: NameQuality  # of the descriptions


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
    leaf_terms = (
        joined.select("path", "traffic", "document")
        .mapInPandas(leaf_term_weight_batches, "path string, term string, weight double")
        .groupBy("path", "term")
        .agg(F.sum("weight").alias("weight"))
    )
    leaves = (
        placed.select("path", "traffic")
        .groupBy("path")
        .applyInPandas(leaf_summary, "path string, weight double, traffic double, items long")
        .toPandas()
    )
    levels = len(tree.branching)
    naming = collect_naming_terms(leaf_terms, leaves, levels, tree.terms_per_label)
    return describe_levels(naming.__getitem__, leaves, levels, tree.terms_per_label), leaves


def read_tree_inputs(spark: SparkSession, input_dir: Path) -> tuple[DataFrame, DataFrame]:
    """Items with their traffic (checkpointed), and the interactions; clear errors when unusable."""
    items_path, interactions_path = input_dir / ITEMS_FILE, input_dir / INTERACTIONS_FILE
    items = require_columns(read_parquet(spark, items_path, "items"), items_path, ITEM_INPUTS)
    interactions = require_columns(
        read_parquet(spark, interactions_path, "interactions"), interactions_path, ("item_id",)
    )
    items = with_traffic(items, interactions).localCheckpoint()
    if items.isEmpty():
        raise ValueError(f"{items_path}: no items to build a tree from")
    return items, interactions


def build_balanced_tree(items: DataFrame, tree: TreeBuildConfig, media_roots: list[Path]) -> BuiltTree:
    """Embed, split top-down level by level, describe every cluster, and place every item on a leaf."""
    embedded = embed(items, tree, media_roots).localCheckpoint()
    placed = assign_levels(embedded, tree)
    descriptions, leaves = describe(items, placed, tree)
    ids = cluster_ids(list(leaves["path"]))
    levels = items.sparkSession.createDataFrame(leaf_levels(ids))
    tree_items = items.drop(*LEVEL_COLUMNS).join(placed.select("item_id", "path"), "item_id")
    tree_items = tree_items.join(levels.withColumnRenamed("leaf_path", "path"), "path")
    return BuiltTree(
        items=conform(tree_items, ITEMS_SCHEMA).orderBy("item_id"),
        clusters=clusters_table(ids, descriptions),
        balance=balance_report(leaves[["path", "traffic"]]),
        placed_items=int(leaves["items"].sum()),
        items_with_thumbnail=embedded.filter("has_image").count(),
        name_quality=names_quality(embedded, placed, descriptions, int(leaves["items"].sum())),
    )


def names_quality(
    embedded: DataFrame, placed: DataFrame, descriptions: dict[str, str], items: int
) -> NameQuality:
    """``name_quality`` of the descriptions over the items' text embeddings (a seeded sample when many)."""
    joined = embedded.select("item_id", "text_embedding").join(placed.select("item_id", "path"), "item_id")
    if items > NAME_QUALITY_ITEMS:
        joined = joined.sample(fraction=NAME_QUALITY_ITEMS / items, seed=0)
    sample = joined.select("path", "text_embedding").toPandas()
    vectors = np.stack(sample["text_embedding"].to_numpy())
    encode = functools.partial(encode_on_executor, embedded.sparkSession)
    return name_quality(descriptions, sample["path"].tolist(), vectors, encode=encode)


def encode_on_executor(spark: SparkSession, texts: list[str]) -> np.ndarray:
    """``embed_texts(texts)`` run on an executor (one partition), so the driver never loads the model."""
    if not texts:
        return embed_texts([])
    frame = spark.createDataFrame(list(enumerate(texts)), "position long, text string").repartition(1)
    rows = frame.mapInPandas(text_vector_batches, "position long, vector array<float>").collect()
    ordered = sorted(rows, key=lambda row: row["position"])
    return np.asarray([row["vector"] for row in ordered], dtype=np.float32).reshape(len(texts), -1)


def text_vector_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """``mapInPandas`` body: the partition's texts embedded as one list, as the driver would have."""
    frames = list(batches)
    if not frames:
        return
    whole = pd.concat(frames, ignore_index=True)
    vectors = embed_texts(whole["text"].tolist())
    yield pd.DataFrame({"position": whole["position"], "vector": list(vectors)})

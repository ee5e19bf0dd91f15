"""Diversified curation: the top-K context items of every next cluster, and the held-out items by time.

The training examples come from the training-period pairs only (the prior job's time cuts): s(v, c)
over them, then the top-K context items of every next cluster. The calibration and validation examples
are every context item of the later periods (up to ``mining.max_holdout_items`` each), labelled with
the next cluster of the highest s(v, c) over that period's pairs (the most satisfying serendipitous
jump, as curation ranks them). Writes the SFT examples
(``SFT_SCHEMA``) and the table of every cluster description.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from serendipity.config import PipelineConfig
from serendipity.io import write_parquet_atomic
from serendipity.logs import run_logged, setup_logging
from serendipity.nomination.prior import PriorInfo
from serendipity.schema import (
    CLUSTERS_FILE,
    CLUSTERS_SCHEMA,
    SFT_SCHEMA,
    SPLIT_CALIBRATION,
    SPLIT_TRAIN,
    SPLIT_VALIDATION,
)
from serendipity.stage_stats import CurateInputs, CurateOutputs, CurateStats, write_stage_stats
from serendipity.worklock import holds_work_dir
from spark_jobs.common import (
    config_from_argv,
    conform,
    read_parquet,
    single_sorted_file,
    start_job,
    write_dataframe_atomic,
)
from spark_jobs.mining import cluster_descriptions, context_cluster_scores, top_context_items_per_cluster
from spark_jobs.transitions import holdout_labels, period

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def write_descriptions(descriptions: DataFrame, path: Path) -> None:
    """One small Parquet file in the clusters schema, so ``ClusterTree.load(path)`` reads it directly."""
    rows = [row.asDict() for row in descriptions.orderBy("cluster_id").collect()]
    write_parquet_atomic(pa.Table.from_pylist(rows, schema=CLUSTERS_SCHEMA), path)


@holds_work_dir("curate")
def run(config: PipelineConfig, spark: SparkSession | None = None) -> CurateStats:
    from pyspark.sql import functions as F

    layout, spark = start_job(config, spark)
    mining = config.mining
    pairs = read_parquet(spark, layout.pairs_path, "serendipitous pairs (pairs job output)")
    clusters = read_parquet(spark, layout.catalog_dir() / CLUSTERS_FILE, "catalog clusters")
    cuts = PriorInfo.read(layout.prior_info_path).cuts
    split = pairs.withColumn("split", period(cuts)).persist()
    scores = context_cluster_scores(
        split.where(F.col("split") == SPLIT_TRAIN), mining.smoothing, mining.min_support
    )
    train = top_context_items_per_cluster(scores, mining.top_k_per_cluster).withColumn(
        "split", F.lit(SPLIT_TRAIN)
    )
    held_out = [
        holdout_labels(split, name, mining.smoothing, mining.max_holdout_items, mining.split_seed)
        for name in (SPLIT_CALIBRATION, SPLIT_VALIDATION)
    ]
    examples = train.unionByName(held_out[0]).unionByName(held_out[1])
    write_dataframe_atomic(
        single_sorted_file(
            conform(examples, SFT_SCHEMA), "split", "target_cluster", "rank", "context_item_id"
        ),
        layout.sft_path,
    )
    write_descriptions(cluster_descriptions(clusters), layout.descriptions_path)
    written = spark.read.parquet(str(layout.sft_path))
    split_counts = {row["split"]: row["count"] for row in written.groupBy("split").count().collect()}
    stats = write_stage_stats(
        layout,
        CurateStats(
            inputs=CurateInputs(serendipitous_pairs=split.count(), clusters=clusters.count()),
            outputs=CurateOutputs(
                examples=sum(split_counts.values()),
                examples_by_split=split_counts,
                target_clusters=written.agg(F.countDistinct("target_cluster")).first()[0],
                descriptions=pq.read_metadata(layout.descriptions_path).num_rows,
                items_by_split={
                    row["split"]: row["items"]
                    for row in written.groupBy("split")
                    .agg(F.countDistinct("context_item_id").alias("items"))
                    .collect()
                },
            ),
        ),
    )
    split.unpersist()
    return stats


def main(argv: list[str] | None = None) -> CurateStats:
    setup_logging()
    config = config_from_argv(__doc__.splitlines()[0], argv)
    return run_logged("curate", lambda: run(config))


if __name__ == "__main__":
    main()

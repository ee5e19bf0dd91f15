"""Diversified curation: the top-K context items of every next cluster, split by context item.

Writes the SFT examples (``SFT_SCHEMA``) and the table of every cluster description.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from serendipity.config import PipelineConfig
from serendipity.io import write_parquet_atomic
from serendipity.schema import CLUSTERS_FILE, CLUSTERS_SCHEMA, SFT_SCHEMA
from serendipity.worklock import holds_work_dir
from spark_jobs.common import (
    config_from_argv,
    conform,
    read_parquet,
    single_sorted_file,
    start_job,
    write_dataframe_atomic,
    write_job_stats,
)
from spark_jobs.mining import assign_split, cluster_descriptions, top_context_items_per_cluster

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def write_descriptions(descriptions: DataFrame, path: Path) -> None:
    """One small Parquet file in the clusters schema, so ``ClusterTree.load(path)`` reads it directly."""
    rows = [row.asDict() for row in descriptions.orderBy("cluster_id").collect()]
    write_parquet_atomic(pa.Table.from_pylist(rows, schema=CLUSTERS_SCHEMA), path)


@holds_work_dir("curate")
def run(config: PipelineConfig, spark: SparkSession | None = None) -> dict[str, Any]:
    from pyspark.sql import functions as F

    layout, spark = start_job(config, spark)
    mining = config.mining
    scores = read_parquet(spark, layout.scores_path, "context-cluster scores (pairs job output)")
    clusters = read_parquet(spark, layout.catalog_dir() / CLUSTERS_FILE, "catalog clusters")
    examples = assign_split(
        top_context_items_per_cluster(scores, mining.top_k_per_cluster),
        mining.validation_fraction,
        mining.split_seed,
    )
    write_dataframe_atomic(
        single_sorted_file(conform(examples, SFT_SCHEMA), "target_cluster", "rank"), layout.sft_path
    )
    write_descriptions(cluster_descriptions(clusters), layout.descriptions_path)
    written = spark.read.parquet(str(layout.sft_path))
    split_counts = {row["split"]: row["count"] for row in written.groupBy("split").count().collect()}
    return write_job_stats(
        layout,
        "curate",
        inputs={"context_cluster_scores": scores.count(), "clusters": clusters.count()},
        outputs={
            "examples": sum(split_counts.values()),
            "examples_by_split": split_counts,
            "target_clusters": written.agg(F.countDistinct("target_cluster")).first()[0],
            "descriptions": pq.read_metadata(layout.descriptions_path).num_rows,
        },
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run(config_from_argv(__doc__.splitlines()[0], argv))


if __name__ == "__main__":
    main()

"""Diversified curation: the top-K context items of every next cluster, split by context item.

Writes the SFT examples (``SFT_SCHEMA``) and the table of every cluster description.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from serendipity.io import write_parquet_atomic as write_table_atomic
from serendipity.schema import CLUSTERS_FILE, CLUSTERS_SCHEMA, SFT_SCHEMA
from spark_jobs.common import start_job, write_parquet_atomic
from spark_jobs.mining import (
    assign_split,
    cluster_descriptions,
    conform,
    read_parquet,
    single_sorted_file,
    top_context_items_per_cluster,
    write_job_stats,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def write_descriptions(descriptions: DataFrame, path: Path) -> None:
    """One small Parquet file in the clusters schema, so ``ClusterTree.load(path)`` reads it directly."""
    rows = [row.asDict() for row in descriptions.orderBy("cluster_id").collect()]
    write_table_atomic(pa.Table.from_pylist(rows, schema=CLUSTERS_SCHEMA), path)


def main(argv: list[str] | None = None) -> None:
    from pyspark.sql import functions as F

    job = start_job(__doc__.splitlines()[0], argv)
    config, layout, spark = job.config, job.layout, job.spark
    mining = config.mining
    scores = read_parquet(spark, layout.scores_path, "context-cluster scores (pairs job output)")
    clusters = read_parquet(spark, layout.catalog_dir() / CLUSTERS_FILE, "catalog clusters")
    examples = assign_split(
        top_context_items_per_cluster(scores, mining.top_k_per_cluster),
        mining.validation_fraction,
        mining.split_seed,
    )
    write_parquet_atomic(
        single_sorted_file(conform(examples, SFT_SCHEMA), "target_cluster", "rank"), layout.sft_path
    )
    write_descriptions(cluster_descriptions(clusters), layout.descriptions_path)
    written = spark.read.parquet(str(layout.sft_path))
    split_counts = {row["split"]: row["count"] for row in written.groupBy("split").count().collect()}
    write_job_stats(
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


if __name__ == "__main__":
    main()

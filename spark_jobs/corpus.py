"""The popular corpus: the most-impressed items covering ``mining.corpus_coverage`` of impressions.

Also writes the delta of items new since the previous corpus manifest (the whole corpus on the
first run) and the manifest itself, last, as the commit of the run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serendipity.io import write_json_atomic
from serendipity.schema import CORPUS_SCHEMA, INTERACTIONS_FILE
from spark_jobs.common import start_job, write_parquet_atomic
from spark_jobs.mining import conform, read_parquet, single_sorted_file, write_job_stats

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def impressions_per_item(interactions: DataFrame) -> DataFrame:
    """Impressions per item: every row counts, except rows whose ``impression`` is false."""
    from pyspark.sql import functions as F

    shown = interactions
    if "impression" in interactions.columns:
        shown = interactions.where(F.coalesce(F.col("impression"), F.lit(True)))
    return shown.groupBy("item_id").agg(F.count(F.lit(1)).alias("impressions"))


def popular_corpus(impressions: DataFrame, coverage: float) -> DataFrame:
    """Items by impressions (desc, then item id) until ``coverage`` of all impressions is reached.

    The item whose impressions cross the threshold is included. The running sum is over per-item
    counts (one row per item), not over the logs.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ranking = Window.orderBy(F.col("impressions").desc(), F.col("item_id").asc())
    running = ranking.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    total = impressions.agg(F.sum("impressions").alias("total"))
    shares = (
        impressions.crossJoin(total)
        .withColumn("cumulative", F.sum("impressions").over(running))
        .withColumn("cumulative_share", F.col("cumulative").cast("double") / F.col("total").cast("double"))
        .withColumn(
            "share_before",
            (F.col("cumulative") - F.col("impressions")).cast("double") / F.col("total").cast("double"),
        )
    )
    return shares.where(F.col("share_before") < F.lit(coverage)).select(
        "item_id", "impressions", "cumulative_share"
    )


@dataclass(frozen=True)
class CorpusManifest:
    """What the previous run committed: its corpus, and the baseline its delta was computed against."""

    item_ids: list[int]
    impressions: list[int]
    previous_item_ids: list[int]
    coverage_target: float
    achieved_coverage: float

    @classmethod
    def load(cls, path: Path) -> CorpusManifest | None:
        if not path.exists():
            return None
        data: dict[str, Any] = json.loads(path.read_text())
        try:
            return cls(**{name: data[name] for name in cls.__dataclass_fields__})
        except KeyError as missing:
            raise ValueError(f"corpus manifest {path} lacks key {missing}; delete it to start over") from None


def delta_baseline(previous: CorpusManifest | None, item_ids: list[int], impressions: list[int]) -> list[int]:
    """Items already covered before this run.

    Re-running on unchanged input (same corpus as the manifest) reuses the manifest's own baseline,
    so the delta, like every output, is the same on every re-run.
    """
    if previous is None:
        return []
    if previous.item_ids == item_ids and previous.impressions == impressions:
        return previous.previous_item_ids
    return previous.item_ids


def new_items(spark: SparkSession, corpus: DataFrame, baseline: list[int]) -> DataFrame:
    from pyspark.sql.types import LongType, StructField, StructType

    known = spark.createDataFrame(
        [(item,) for item in baseline], StructType([StructField("item_id", LongType())])
    )
    return corpus.join(known, "item_id", "left_anti")


def main(argv: list[str] | None = None) -> None:
    job = start_job(__doc__.splitlines()[0], argv)
    config, layout, spark = job.config, job.layout, job.spark
    coverage = config.mining.corpus_coverage
    interactions = read_parquet(spark, layout.validated_dir / INTERACTIONS_FILE, "validated interactions")
    corpus = conform(popular_corpus(impressions_per_item(interactions), coverage), CORPUS_SCHEMA)
    write_parquet_atomic(single_sorted_file(corpus, "cumulative_share", "item_id"), layout.corpus_path)
    written = spark.read.parquet(str(layout.corpus_path)).orderBy("cumulative_share", "item_id")
    rows = written.select("item_id", "impressions").collect()
    item_ids = [row["item_id"] for row in rows]
    counts = [row["impressions"] for row in rows]
    previous = CorpusManifest.load(layout.corpus_manifest_path)
    baseline = delta_baseline(previous, item_ids, counts)
    delta = new_items(spark, written, baseline)
    write_parquet_atomic(single_sorted_file(delta, "cumulative_share", "item_id"), layout.corpus_delta_path)
    achieved = written.agg({"cumulative_share": "max"}).first()[0] or 0.0
    write_json_atomic(
        {
            "item_ids": item_ids,
            "impressions": counts,
            "previous_item_ids": baseline,
            "coverage_target": coverage,
            "achieved_coverage": achieved,
        },
        layout.corpus_manifest_path,
    )
    delta_count = spark.read.parquet(str(layout.corpus_delta_path)).count()
    write_job_stats(
        layout,
        "corpus",
        inputs={"interactions": interactions.count()},
        outputs={"corpus_items": len(item_ids), "delta_items": delta_count, "achieved_coverage": achieved},
    )
    print(
        f"corpus: {len(item_ids):,} items cover {achieved:.2%} of impressions "
        f"(target {coverage:.0%}); {delta_count:,} new since the previous manifest"
    )


if __name__ == "__main__":
    main()

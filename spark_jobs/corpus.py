"""The popular corpus: the most-impressed items covering ``mining.corpus_coverage`` of impressions.

Also writes the delta of items new since the previous corpus manifest (the whole corpus on the
first run) and the manifest itself, last, as the commit of the run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from serendipity.config import PipelineConfig
from serendipity.corpus_manifest import CorpusManifest, delta_baseline
from serendipity.schema import CORPUS_SCHEMA, INTERACTIONS_FILE
from spark_jobs.common import (
    config_from_argv,
    conform,
    read_parquet,
    single_sorted_file,
    start_job,
    write_dataframe_atomic,
    write_job_stats,
)
from spark_jobs.mining import impressions_per_item, new_items, popular_corpus

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def run(config: PipelineConfig, spark: SparkSession | None = None) -> dict[str, Any]:
    layout, spark = start_job(config, spark)
    coverage = config.mining.corpus_coverage
    interactions = read_parquet(spark, layout.validated_dir / INTERACTIONS_FILE, "validated interactions")
    corpus = conform(popular_corpus(impressions_per_item(interactions), coverage), CORPUS_SCHEMA)
    write_dataframe_atomic(single_sorted_file(corpus, "cumulative_share", "item_id"), layout.corpus_path)
    written = spark.read.parquet(str(layout.corpus_path)).orderBy("cumulative_share", "item_id")
    rows = written.select("item_id", "impressions").collect()
    item_ids = [row["item_id"] for row in rows]
    counts = [row["impressions"] for row in rows]
    baseline = delta_baseline(CorpusManifest.load(layout.corpus_manifest_path), item_ids, counts)
    delta = new_items(written, baseline)
    write_dataframe_atomic(single_sorted_file(delta, "cumulative_share", "item_id"), layout.corpus_delta_path)
    achieved = written.agg({"cumulative_share": "max"}).first()[0] or 0.0
    CorpusManifest(item_ids, counts, baseline, coverage, achieved).write(layout.corpus_manifest_path)
    delta_count = spark.read.parquet(str(layout.corpus_delta_path)).count()
    print(
        f"corpus: {len(item_ids):,} items cover {achieved:.2%} of impressions "
        f"(target {coverage:.0%}); {delta_count:,} new since the previous manifest"
    )
    return write_job_stats(
        layout,
        "corpus",
        inputs={"interactions": interactions.count()},
        outputs={"corpus_items": len(item_ids), "delta_items": delta_count, "achieved_coverage": achieved},
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run(config_from_argv(__doc__.splitlines()[0], argv))


if __name__ == "__main__":
    main()

"""The popular corpus: the most-impressed items covering ``mining.corpus_coverage`` of impressions.

Also writes the delta of items new since the previous corpus manifest (the whole corpus on the
first run), the committed items and baseline (Parquet), and the manifest itself, last, as the commit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from serendipity.config import PipelineConfig
from serendipity.logs import run_logged, setup_logging
from serendipity.schema import CORPUS_SCHEMA, INTERACTIONS_FILE
from serendipity.stage_stats import CorpusInputs, CorpusOutputs, CorpusStats, write_stage_stats
from serendipity.worklock import holds_work_dir
from spark_jobs.common import (
    config_from_argv,
    conform,
    read_parquet,
    start_job,
    write_sorted_atomic,
)
from spark_jobs.corpus_commit import commit_generation
from spark_jobs.mining import impressions_per_item, new_items, popular_corpus

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

CORPUS_ORDER = ("cumulative_share", "item_id")


@holds_work_dir("corpus")
def run(config: PipelineConfig, spark: SparkSession | None = None) -> CorpusStats:
    layout, spark = start_job(config, spark)
    coverage = config.mining.corpus_coverage
    interactions = read_parquet(spark, layout.validated_dir / INTERACTIONS_FILE, "validated interactions")
    corpus = conform(popular_corpus(impressions_per_item(interactions), coverage), CORPUS_SCHEMA)
    write_sorted_atomic(corpus, layout.corpus_path, *CORPUS_ORDER)
    written = spark.read.parquet(str(layout.corpus_path))
    achieved = written.agg({"cumulative_share": "max"}).first()[0] or 0.0
    items = written.select("item_id", "impressions")
    manifest, baseline = commit_generation(items, coverage, achieved, layout.corpus_manifest_path)
    write_sorted_atomic(new_items(written, baseline), layout.corpus_delta_path, *CORPUS_ORDER)
    manifest.write(layout.corpus_manifest_path)
    delta_count = spark.read.parquet(str(layout.corpus_delta_path)).count()
    print(
        f"corpus: {manifest.corpus_items:,} items cover {achieved:.2%} of impressions "
        f"(target {coverage:.0%}); {delta_count:,} new since the previous manifest"
    )
    return write_stage_stats(
        layout,
        CorpusStats(
            inputs=CorpusInputs(interactions=interactions.count()),
            outputs=CorpusOutputs(
                corpus_items=manifest.corpus_items,
                delta_items=delta_count,
                achieved_coverage=achieved,
            ),
        ),
    )


def main(argv: list[str] | None = None) -> CorpusStats:
    setup_logging()
    config = config_from_argv(__doc__.splitlines()[0], argv)
    return run_logged("corpus", lambda: run(config))


if __name__ == "__main__":
    main()

"""Serendipitous pairs with satisfaction, and s(v, c): satisfaction of context item v towards cluster c."""

from __future__ import annotations

from typing import TYPE_CHECKING

from serendipity.config import PipelineConfig
from serendipity.logs import run_logged, setup_logging
from serendipity.schema import CONTEXT_CLUSTER_SCORES_SCHEMA, PAIRS_SCHEMA
from serendipity.stage_stats import LogInputs, PairsOutputs, PairsStats, write_stage_stats
from serendipity.worklock import holds_work_dir
from spark_jobs.common import (
    config_from_argv,
    conform,
    read_logs,
    start_job,
    write_dataframe_atomic,
)
from spark_jobs.mining import consecutive_pairs, context_cluster_scores, serendipitous_pairs

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@holds_work_dir("pairs")
def run(config: PipelineConfig, spark: SparkSession | None = None) -> PairsStats:
    layout, spark = start_job(config, spark)
    interactions, items = read_logs(spark, layout)
    mining = config.mining
    pairs = serendipitous_pairs(
        consecutive_pairs(interactions, items, mining.level, mining.session_gap_minutes)
    ).persist()
    scores = conform(
        context_cluster_scores(pairs, mining.smoothing, mining.min_support), CONTEXT_CLUSTER_SCORES_SCHEMA
    )
    write_dataframe_atomic(
        conform(pairs, PAIRS_SCHEMA).sortWithinPartitions("user_id", "ts", "context_item_id"),
        layout.pairs_path,
    )
    write_dataframe_atomic(scores.orderBy("next_cluster", "context_item_id"), layout.scores_path)
    stats = write_stage_stats(
        layout,
        PairsStats(
            inputs=LogInputs(interactions=interactions.count(), items=items.count()),
            outputs=PairsOutputs(
                serendipitous_pairs=pairs.count(),
                context_cluster_scores=spark.read.parquet(str(layout.scores_path)).count(),
            ),
        ),
    )
    pairs.unpersist()
    return stats


def main(argv: list[str] | None = None) -> PairsStats:
    setup_logging()
    config = config_from_argv(__doc__.splitlines()[0], argv)
    return run_logged("pairs", lambda: run(config))


if __name__ == "__main__":
    main()

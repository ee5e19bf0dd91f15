"""Serendipitous pairs with satisfaction, and s(v, c): satisfaction of context item v towards cluster c."""

from __future__ import annotations

from serendipity.schema import (
    CONTEXT_CLUSTER_SCORES_SCHEMA,
    PAIRS_SCHEMA,
)
from spark_jobs.common import start_job, write_parquet_atomic
from spark_jobs.mining import (
    conform,
    consecutive_pairs,
    context_cluster_scores,
    read_logs,
    serendipitous_pairs,
    write_job_stats,
)


def main(argv: list[str] | None = None) -> None:
    job = start_job(__doc__.splitlines()[0], argv)
    config, layout, spark = job.config, job.layout, job.spark
    interactions, items = read_logs(spark, layout)
    mining = config.mining
    pairs = serendipitous_pairs(
        consecutive_pairs(interactions, items, mining.level, mining.session_gap_minutes)
    ).persist()
    scores = conform(
        context_cluster_scores(pairs, mining.smoothing, mining.min_support), CONTEXT_CLUSTER_SCORES_SCHEMA
    )
    write_parquet_atomic(
        conform(pairs, PAIRS_SCHEMA).sortWithinPartitions("user_id", "ts", "context_item_id"),
        layout.pairs_path,
    )
    write_parquet_atomic(scores.orderBy("next_cluster", "context_item_id"), layout.scores_path)
    write_job_stats(
        layout,
        "pairs",
        inputs={"interactions": interactions.count(), "items": items.count()},
        outputs={
            "serendipitous_pairs": pairs.count(),
            "context_cluster_scores": spark.read.parquet(str(layout.scores_path)).count(),
        },
    )
    pairs.unpersist()


if __name__ == "__main__":
    main()

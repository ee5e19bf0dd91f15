"""Feast sources: per-user recent engaged items and per-item cluster path + popularity, as daily snapshots.

See :mod:`spark_jobs.snapshots`. Writes ``WorkLayout.user_history_path`` and ``WorkLayout.item_meta_path``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from serendipity.config import PipelineConfig
from serendipity.logs import run_logged, setup_logging
from serendipity.schema import EVENT_TIMESTAMP, ITEM_JOIN_KEY, USER_JOIN_KEY
from serendipity.stage_stats import LogInputs, UserHistoryOutputs, UserHistoryStats, write_stage_stats
from serendipity.worklock import holds_work_dir
from spark_jobs.common import (
    config_from_argv,
    read_logs,
    start_job,
    write_sorted_atomic,
)
from spark_jobs.snapshots import item_meta_snapshots, user_history_snapshots

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@holds_work_dir("user_history")
def run(config: PipelineConfig, spark: SparkSession | None = None) -> UserHistoryStats:
    layout, spark = start_job(config, spark)
    interactions, items = read_logs(spark, layout)
    engaged_above, length = config.engagement.satisfaction_above, config.features.history_length
    history = user_history_snapshots(interactions, engaged_above, length)
    meta = item_meta_snapshots(items, interactions)
    write_sorted_atomic(history, layout.user_history_path, USER_JOIN_KEY, EVENT_TIMESTAMP)
    write_sorted_atomic(meta, layout.item_meta_path, ITEM_JOIN_KEY, EVENT_TIMESTAMP)
    catalog_ids = items.select("item_id")
    return write_stage_stats(
        layout,
        UserHistoryStats(
            inputs=LogInputs(interactions=interactions.count(), items=items.count()),
            outputs=UserHistoryOutputs(
                user_history_rows=spark.read.parquet(str(layout.user_history_path)).count(),
                item_meta_rows=spark.read.parquet(str(layout.item_meta_path)).count(),
                interactions_outside_catalog=interactions.join(catalog_ids, "item_id", "left_anti").count(),
            ),
        ),
    )


def main(argv: list[str] | None = None) -> UserHistoryStats:
    setup_logging()
    config = config_from_argv(__doc__.splitlines()[0], argv)
    return run_logged("user_history", lambda: run(config))


if __name__ == "__main__":
    main()

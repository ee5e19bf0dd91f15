"""Satisfaction of similar vs serendipitous vs distant next items (the paper's preliminary analysis).

Writes ``overall.parquet`` and ``per_cluster.parquet`` under ``WorkLayout.aggregates_dir``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from serendipity.config import PipelineConfig
from serendipity.logs import run_logged, setup_logging
from serendipity.stage_stats import AggregatesOutputs, AggregatesStats, LogInputs, write_stage_stats
from serendipity.worklock import holds_work_dir
from spark_jobs.common import (
    config_from_argv,
    conform,
    read_logs,
    single_sorted_file,
    start_job,
    write_dataframe_atomic,
)
from spark_jobs.mining import (
    OVERALL_RATES_SCHEMA,
    PER_CLUSTER_RATES_SCHEMA,
    consecutive_pairs,
    satisfaction_rates,
)

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import SparkSession


@holds_work_dir("aggregates")
def run(config: PipelineConfig, spark: SparkSession | None = None) -> AggregatesStats:
    layout, spark = start_job(config, spark)
    interactions, items = read_logs(spark, layout)
    level = config.mining.level
    pairs = consecutive_pairs(interactions, items, level, config.mining.session_gap_minutes).persist()
    overall = conform(satisfaction_rates(pairs, ["pair_class"]), OVERALL_RATES_SCHEMA)
    per_cluster = conform(
        satisfaction_rates(pairs, ["context_parent_cluster", "pair_class"]), PER_CLUSTER_RATES_SCHEMA
    )
    write_dataframe_atomic(single_sorted_file(overall, "pair_class"), layout.aggregates_overall_path)
    write_dataframe_atomic(
        single_sorted_file(per_cluster, "context_parent_cluster", "pair_class"),
        layout.aggregates_per_cluster_path,
    )
    overall_table = spark.read.parquet(str(layout.aggregates_overall_path)).orderBy("pair_class").toPandas()
    pairs.unpersist()
    print_rates(overall_table, level)
    return write_stage_stats(
        layout,
        AggregatesStats(
            inputs=LogInputs(interactions=interactions.count(), items=items.count()),
            outputs=AggregatesOutputs(
                pairs=int(overall_table["count"].sum()),
                overall_rows=len(overall_table),
                per_cluster_rows=spark.read.parquet(str(layout.aggregates_per_cluster_path)).count(),
            ),
        ),
    )


def print_rates(overall: pd.DataFrame, level: int) -> None:
    """The aggregates job's overall table (one row per pair class) on the console."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Next-item satisfaction by pair class (level L={level}, parent L-1={level - 1})")
    for column in ("class", "pairs", "mean", "std", "95% CI"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for row in overall.itertuples(index=False):
        interval = "n/a" if row.ci_low != row.ci_low else f"[{row.ci_low:.4f}, {row.ci_high:.4f}]"
        std = "n/a" if row.std_satisfaction != row.std_satisfaction else f"{row.std_satisfaction:.4f}"
        table.add_row(row.pair_class, f"{row.count:,}", f"{row.mean_satisfaction:.4f}", std, interval)
    Console().print(table)


def main(argv: list[str] | None = None) -> AggregatesStats:
    setup_logging()
    config = config_from_argv(__doc__.splitlines()[0], argv)
    return run_logged("aggregates", lambda: run(config))


if __name__ == "__main__":
    main()

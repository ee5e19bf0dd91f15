"""The logged transition prior and the time split of the serendipitous pairs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from serendipity.config import PipelineConfig
from serendipity.logs import run_logged, setup_logging
from serendipity.nomination.prior import PriorInfo
from serendipity.schema import CLUSTER_PRIOR_SCHEMA, CLUSTERS_FILE, ITEM_PRIOR_SCHEMA, SPLIT_TRAIN, SPLITS
from serendipity.stage_stats import PairsInputs, PriorOutputs, PriorStats, write_stage_stats
from serendipity.worklock import holds_work_dir
from spark_jobs.common import (
    config_from_argv,
    conform,
    read_parquet,
    single_sorted_file,
    start_job,
    write_dataframe_atomic,
)
from spark_jobs.transitions import (
    best_shrinkage,
    cluster_prior,
    item_evidence,
    item_prior,
    period,
    shrinkage_log_likelihood,
    sibling_pairs,
    time_cuts,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@holds_work_dir("prior")
def run(config: PipelineConfig, spark: SparkSession | None = None) -> PriorStats:
    from pyspark.sql import functions as F

    layout, spark = start_job(config, spark)
    mining, settings = config.mining, config.prior
    pairs = read_parquet(spark, layout.pairs_path, "serendipitous pairs (pairs job output)")
    clusters = read_parquet(spark, layout.catalog_dir() / CLUSTERS_FILE, "catalog clusters")
    cuts = time_cuts(pairs, mining.calibration_fraction, mining.validation_fraction)
    split = pairs.withColumn("split", period(cuts))
    counts = {row["split"]: row["count"] for row in split.groupBy("split").count().collect()}
    train = split.where(F.col("split") == SPLIT_TRAIN).persist()
    clusters_prior = cluster_prior(train, sibling_pairs(clusters, mining.level), settings.smoothing).persist()
    evidence = item_evidence(train, clusters_prior, settings.min_item_transitions).persist()
    beta = best_shrinkage(shrinkage_log_likelihood(evidence))
    write_dataframe_atomic(
        single_sorted_file(conform(clusters_prior, CLUSTER_PRIOR_SCHEMA), "context_cluster", "next_cluster"),
        layout.cluster_prior_path,
    )
    write_dataframe_atomic(
        single_sorted_file(
            conform(item_prior(evidence, beta), ITEM_PRIOR_SCHEMA), "context_item_id", "next_cluster"
        ),
        layout.item_prior_path,
    )
    warm = evidence.select("context_item_id").distinct().count()
    info = PriorInfo(
        cuts=cuts,
        smoothing=settings.smoothing,
        shrinkage=beta,
        min_item_transitions=settings.min_item_transitions,
        pairs_by_split={name: int(counts.get(name, 0)) for name in SPLITS},
        warm_items=int(warm),
    ).with_snapshot()
    info.write(layout.prior_info_path)
    for frame in (train, clusters_prior, evidence):
        frame.unpersist()
    return write_stage_stats(
        layout,
        PriorStats(
            inputs=PairsInputs(serendipitous_pairs=sum(counts.values())),
            outputs=PriorOutputs(
                pairs_by_split=info.pairs_by_split,
                cluster_prior_rows=spark.read.parquet(str(layout.cluster_prior_path)).count(),
                warm_items=info.warm_items,
                shrinkage=beta,
                snapshot=info.snapshot,
                **info.cuts.iso(),
            ),
        ),
    )


def main(argv: list[str] | None = None) -> PriorStats:
    setup_logging()
    config = config_from_argv(__doc__.splitlines()[0], argv)
    return run_logged("prior", lambda: run(config))


if __name__ == "__main__":
    main()

"""Spark job: validate the dataset at scale and write usable rows, quarantine and report.

The checks and reason texts come from :mod:`serendipity.validation.rules`; the output equals the pandas
validator's (:mod:`serendipity.validation`). The small clusters table is checked on the driver with the
library; items and interactions stay distributed; media files are opened on the executors
(:mod:`spark_jobs.validation_dataset`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from serendipity.config import PipelineConfig
from serendipity.logs import run_logged, setup_logging
from serendipity.stage_stats import ValidateStats, write_stage_stats
from serendipity.worklock import holds_work_dir
from spark_jobs.common import config_from_argv, start_job
from spark_jobs.validation_dataset import job_stats, validate_with_spark

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class DatasetInvalid(ValueError):
    """A dataset file is unusable (unreadable, or a required column is missing or mistyped)."""


@holds_work_dir("validate")
def run(config: PipelineConfig, spark: SparkSession | None = None) -> ValidateStats:
    """Validate the dataset into ``WorkLayout.validated_dir``; DatasetInvalid when a file is unusable."""
    layout, spark = start_job(config, spark)
    report = validate_with_spark(spark, config.dataset_dir, layout.validated_dir, config.limits)
    stats = write_stage_stats(layout, job_stats(report))
    print(json.dumps(stats.to_json()))
    print(report.summary())
    if report.fatal:
        raise DatasetInvalid("\n".join(p.message for p in report.problems if p.severity == "fatal"))
    return stats


def main(argv: list[str] | None = None) -> ValidateStats:
    setup_logging()
    config = config_from_argv("Validate the dataset; write usable rows, quarantine and report.", argv)
    return run_logged("validate", lambda: run(config))


if __name__ == "__main__":
    main()

"""Shared plumbing for the Spark jobs: one session helper, argument parsing, atomic Parquet output."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from serendipity.config import PipelineConfig, SparkConfig, load_config
from serendipity.layout import WorkLayout

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def get_spark(config: SparkConfig | None = None) -> SparkSession:
    """The one way to get a SparkSession: reuses an active session (e.g. under spark-submit)."""
    from pyspark.sql import SparkSession

    config = config or SparkConfig()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.appName(config.app_name)
        .config("spark.sql.shuffle.partitions", str(config.shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", config.driver_memory)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    )
    if not launched_by_spark_submit():
        builder = builder.master(config.master)
    for key, value in config.extra_conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def launched_by_spark_submit() -> bool:
    """spark-submit starts the JVM first and hands its gateway port to the Python driver."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def job_arg_parser(description: str) -> argparse.ArgumentParser:
    """Parser every job starts from: ``--config`` plus explicit input/output overrides."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="pipeline YAML (configs/demo.yaml, ...)")
    parser.add_argument("--master", default=None, help="Spark master URL; overrides spark.master")
    return parser


def load_job_config(args: argparse.Namespace) -> PipelineConfig:
    config = load_config(args.config)
    if args.master:
        config = config.model_copy(update={"spark": config.spark.model_copy(update={"master": args.master})})
    return config


@dataclass(frozen=True)
class JobContext:
    """What every job's ``main`` starts from: its config, the work-dir layout and the Spark session."""

    config: PipelineConfig
    layout: WorkLayout
    spark: SparkSession


def start_job(description: str, argv: list[str] | None) -> JobContext:
    """Parse ``--config``/``--master``, load the config, get the session."""
    config = load_job_config(job_arg_parser(description).parse_args(argv))
    return JobContext(config, WorkLayout.of(config), get_spark(config.spark))


def write_parquet_atomic(df: DataFrame, uri: str | Path) -> None:
    """Write ``df`` to a temporary sibling directory, then swap it into place.

    Local paths are renamed atomically; remote URIs (s3a://, gs://) rely on the committer.
    """
    uri = str(uri)
    if "://" in uri and not uri.startswith("file://"):
        df.write.mode("overwrite").parquet(uri)
        return
    target = Path(uri.removeprefix("file://"))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    df.write.mode("overwrite").parquet(str(tmp))
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)

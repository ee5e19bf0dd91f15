"""Spark I/O of the jobs: the session, job start, Parquet reads and atomic writes, output schemas, stats."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pyarrow as pa

from serendipity.config import PipelineConfig, SparkConfig, load_config, with_overrides
from serendipity.io import atomic_directory
from serendipity.layout import WorkLayout
from serendipity.schema import INTERACTIONS_FILE, ITEMS_FILE

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

SPARK_TYPE_NAMES: dict[pa.DataType, str] = {
    pa.int8(): "tinyint",
    pa.int32(): "int",
    pa.int64(): "bigint",
    pa.float64(): "double",
    pa.string(): "string",
    pa.bool_(): "boolean",
}


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


class SparkScope:
    """The pipeline's Spark session between its Spark stages: stopped, JVM and all, before any other stage.

    Only a session this scope saw started is stopped (never one that was running already, e.g. a test
    fixture's or spark-submit's); a later Spark stage then starts a fresh one through ``get_spark``.
    """

    def __init__(self) -> None:
        self.owned = False

    def before_stage(self, uses_spark: bool) -> None:
        if not uses_spark:
            self.close()
        elif not self.owned and not spark_running() and not launched_by_spark_submit():
            self.owned = True

    def close(self) -> None:
        if self.owned:
            stop_spark_and_jvm()
        self.owned = False


def spark_running() -> bool:
    from pyspark import SparkContext

    return SparkContext._active_spark_context is not None


def stop_spark_and_jvm() -> None:
    """Stop the active session and end its JVM (its gateway exits when its stdin closes)."""
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is not None:
        session.stop()
    elif SparkContext._active_spark_context is not None:
        SparkContext._active_spark_context.stop()
    gateway = SparkContext._gateway
    if gateway is None:
        return
    process = getattr(gateway, "proc", None)
    gateway.shutdown()
    if process is not None:
        process.stdin.close()
        process.wait(timeout=60)
    SparkContext._gateway = None
    SparkContext._jvm = None


def launched_by_spark_submit() -> bool:
    """spark-submit starts the JVM first and hands its gateway port to the Python driver."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def config_from_argv(description: str, argv: list[str] | None) -> PipelineConfig:
    """What every job's ``main`` parses: ``--config`` and an optional ``--master`` overriding spark.master."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="pipeline YAML (configs/demo.yaml, ...)")
    parser.add_argument("--master", default=None, help="Spark master URL; overrides spark.master")
    args = parser.parse_args(argv)
    return with_overrides(load_config(args.config), {"spark.master": args.master})


class JobContext(NamedTuple):
    """What every job's ``run`` starts from besides its config: the work-dir layout and the Spark session."""

    layout: WorkLayout
    spark: SparkSession


def start_job(config: PipelineConfig, spark: SparkSession | None = None) -> JobContext:
    """The job's context; without ``spark``, the shared session of ``config.spark``."""
    return JobContext(WorkLayout.of(config), spark or get_spark(config.spark))


def read_parquet(spark: SparkSession, uri: str | Path, what: str) -> DataFrame:
    """Read a Parquet file or directory, failing with a message that names what is missing."""
    text = str(uri)
    if "://" not in text and not Path(text).exists():
        raise FileNotFoundError(f"{what} not found at {text}; run the stage that writes it first")
    return spark.read.parquet(text)


def read_logs(spark: SparkSession, layout: WorkLayout) -> tuple[DataFrame, DataFrame]:
    """The validated interactions and the catalog's items (the tree's, when one was built)."""
    interactions = read_parquet(spark, layout.validated_dir / INTERACTIONS_FILE, "validated interactions")
    return interactions, read_parquet(spark, layout.catalog_dir() / ITEMS_FILE, "catalog items")


def spark_type(arrow_type: pa.DataType) -> str:
    """The Spark SQL type name of an Arrow type of the contract's schemas."""
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    if arrow_type not in SPARK_TYPE_NAMES:
        raise TypeError(f"no Spark type for {arrow_type}")
    return SPARK_TYPE_NAMES[arrow_type]


def conform(df: DataFrame, schema: pa.Schema) -> DataFrame:
    """Select the columns of ``schema`` in order, cast to its types."""
    from pyspark.sql import functions as F

    missing = [name for name in schema.names if name not in df.columns]
    if missing:
        raise ValueError(f"DataFrame lacks columns {missing} of the output schema; has {df.columns}")
    return df.select(*[F.col(field.name).cast(spark_type(field.type)).alias(field.name) for field in schema])


def single_sorted_file(df: DataFrame, *columns: str) -> DataFrame:
    """One partition sorted by ``columns``: for small outputs, so reruns give the same rows in order."""
    return df.repartition(1).sortWithinPartitions(*columns)


def write_sorted_atomic(df: DataFrame, uri: str | Path, *columns: str) -> None:
    """Write ``df`` globally sorted by ``columns`` over range-partitioned part files, atomically.

    For per-user and per-item tables: no single partition holds them; readers (pyarrow, pandas, Feast)
    read the directory, its part files in name order, so rows come back in order.
    """
    write_dataframe_atomic(df.orderBy(*columns), uri)


def write_dataframe_atomic(df: DataFrame, uri: str | Path) -> None:
    """Write ``df`` as Parquet to a temporary sibling directory, then swap it into place.

    Local paths are replaced atomically; remote URIs (s3a://, gs://) rely on the committer.
    """
    uri = str(uri)
    if "://" in uri and not uri.startswith("file://"):
        df.write.mode("overwrite").parquet(uri)
        return
    with atomic_directory(uri.removeprefix("file://")) as staging:
        df.write.mode("overwrite").parquet(str(staging))

"""A whole dataset validated with Spark: row checks, report, usable rows and quarantine, written atomically.

Mirrors :mod:`serendipity.validation.dataset` (the pandas engine): the same checks, reasons and outputs.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from serendipity.config import InputLimitsConfig
from serendipity.io import atomic_directory, write_json_atomic
from serendipity.schema import (
    CLUSTERS_FILE,
    DATASET_FILES,
    INTERACTIONS_FILE,
    ITEMS_FILE,
    QUARANTINE_COLUMN,
    QUARANTINE_REASON,
    QUARANTINE_ROW,
)
from serendipity.stage_stats import ValidateStats
from serendipity.validation.checks import check_clusters
from serendipity.validation.dataset import (
    MEDIA_QUARANTINE_FILE,
    QUARANTINE_DIR,
    REPORT_FILE,
    inspect_file,
    row_problems,
)
from serendipity.validation.media_paths import MEDIA_PATH
from serendipity.validation.report import MAX_EXAMPLES, FileCounts, Problem, ValidationReport, describe_value
from serendipity.validation.rules import EMPTY_TITLE, LENGTH_LIMITED_COLUMNS, Check, row_checks
from serendipity.validation.table import TableValidation, read_table_file
from serendipity.validation.text import truncated_reason
from spark_jobs.common import write_dataframe_atomic
from spark_jobs.validation_frames import (
    QUARANTINED,
    check_interactions,
    check_items,
    check_media,
    media_outputs,
    over_long_flag,
    quarantined_rows,
    typed,
    usable_rows,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def flag_columns(checked: DataFrame, file: str) -> dict[Check, str]:
    return {c: f"__flag{i}" for i, c in enumerate(row_checks(file)) if f"__flag{i}" in checked.columns}


def _examples(frame: DataFrame, column: str | None) -> tuple[list[int], list[str]]:
    from pyspark.sql import functions as F

    selected = [QUARANTINE_ROW, *([F.col(f"`{column}`").alias("__value")] if column else [])]
    rows = frame.orderBy(QUARANTINE_ROW).limit(MAX_EXAMPLES).select(*selected).collect()
    values = [describe_value(row["__value"]) for row in rows] if column else []
    return [int(row[QUARANTINE_ROW]) for row in rows], values


def spark_row_problems(checked: DataFrame, file: str, source: pa.Schema) -> tuple[list[Problem], FileCounts]:
    """Counts in one aggregation; the first rows of every flagged check in one more query."""
    from pyspark.sql import functions as F

    names = flag_columns(checked, file)
    totals = checked.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.col(QUARANTINED).cast("long")).alias("quarantined"),
        *[F.sum(F.col(name).cast("long")).alias(name) for name in names.values()],
    ).first()
    flagged = {check: name for check, name in names.items() if int(totals[name] or 0)}
    examples = flagged_examples(checked, flagged, source)
    problems = []
    for check, name in flagged.items():
        rows, values = examples[name]
        count = int(totals[name])
        problems.append(Problem(file, check.column, check.reason, "quarantined", count, rows, values))
    quarantined = int(totals["quarantined"] or 0)
    return problems, FileCounts(int(totals["rows"]), int(totals["rows"]) - quarantined, quarantined)


def flagged_examples(
    checked: DataFrame, flagged: dict[Check, str], source: pa.Schema
) -> dict[str, tuple[list[int], list[str]]]:
    """Per flag column: its first ``MAX_EXAMPLES`` rows and their values, all checks in one query."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if not flagged:
        return {}
    value_columns = sorted({check.column for check in flagged if check.column in source.names})
    fields = {column: f"__value{index}" for index, column in enumerate(value_columns)}
    entries = []
    for check, name in flagged.items():
        values = [
            (
                F.col(f"`{column}`")
                if column == check.column
                else F.lit(None).cast(checked.schema[column].dataType)
            ).alias(field)
            for column, field in fields.items()
        ]
        entry = F.struct(F.lit(name).alias("__flag"), F.col(QUARANTINE_ROW).alias("__row"), *values)
        entries.append(F.when(F.col(name), entry))
    any_flag = functools.reduce(lambda a, b: a | b, [F.col(name) for name in flagged.values()])
    exploded = checked.where(any_flag).select(
        F.explode(F.filter(F.array(*entries), lambda entry: entry.isNotNull())).alias("__entry")
    )
    rank = F.row_number().over(Window.partitionBy("__flag").orderBy("__row"))
    firsts = exploded.select("__entry.*").withColumn("__rank", rank).where(F.col("__rank") <= MAX_EXAMPLES)
    examples: dict[str, tuple[list[int], list[str]]] = {name: ([], []) for name in flagged.values()}
    for row in firsts.orderBy("__flag", "__row").collect():
        rows, values = examples[row["__flag"]]
        rows.append(int(row["__row"]))
        check = next(check for check, name in flagged.items() if name == row["__flag"])
        if check.column in fields:
            values.append(describe_value(row[fields[check.column]]))
    return examples


def spark_warnings(items: DataFrame, records: DataFrame, limits: InputLimitsConfig) -> list[Problem]:
    """Empty and truncated titles (texts) of usable items, and media paths set to null (grouped by column
    and reason)."""
    from pyspark.sql import functions as F

    problems = []
    blank = items.where(~F.col(QUARANTINED) & (F.trim(F.col(typed("title"))) == ""))
    if count := blank.count():
        rows, values = _examples(blank, "title")
        problems.append(Problem(ITEMS_FILE, "title", EMPTY_TITLE, "warning", count, rows, values))
    for column in LENGTH_LIMITED_COLUMNS if limits.over_long_text == "truncate" else ():
        cut = items.where(~F.col(QUARANTINED) & F.col(over_long_flag(column)))
        if count := cut.count():
            rows, values = _examples(cut, column)
            problems.append(
                Problem(ITEMS_FILE, column, truncated_reason(column), "warning", count, rows, values)
            )
    groups = records.groupBy(QUARANTINE_COLUMN, QUARANTINE_REASON).agg(
        F.count(F.lit(1)).alias("n"), F.min(QUARANTINE_ROW).alias("first")
    )
    for group in groups.orderBy("first", QUARANTINE_COLUMN).collect():
        column, reason = group[QUARANTINE_COLUMN], group[QUARANTINE_REASON]
        subset = records.where((F.col(QUARANTINE_COLUMN) == column) & (F.col(QUARANTINE_REASON) == reason))
        rows, values = _examples(subset, MEDIA_PATH)
        problems.append(
            Problem(
                ITEMS_FILE, column, f"{reason} (path set to null)", "warning", int(group["n"]), rows, values
            )
        )
    return problems


def clusters_on_driver(spark: SparkSession, dataset_dir: Path) -> tuple[TableValidation, DataFrame]:
    """The tree checks with the library (the clusters table is small); usable clusters as a DataFrame."""
    clusters = TableValidation.start(CLUSTERS_FILE, read_table_file(dataset_dir / CLUSTERS_FILE))
    check_clusters(clusters)
    lookup = clusters.usable_table().select(["cluster_id", "level", "parent_id"]).to_pylist()
    return clusters, spark.createDataFrame(lookup, "cluster_id long, level int, parent_id long")


def validate_with_spark(
    spark: SparkSession, dataset_dir: Path, out_dir: Path, limits: InputLimitsConfig
) -> ValidationReport:
    """Run every check within ``limits``; atomically replace ``out_dir`` (only the report when a file is
    unusable)."""
    report = ValidationReport(str(dataset_dir))
    sources: dict[str, pa.Schema | None] = {}
    for file in DATASET_FILES:
        sources[file], problems = inspect_file(dataset_dir, file)
        report.problems += problems
    clusters, lookup = clusters_on_driver(spark, dataset_dir) if sources[CLUSTERS_FILE] else (None, None)
    if clusters is not None:
        report.problems += row_problems(clusters)
        report.files[CLUSTERS_FILE] = FileCounts(
            len(clusters), int((~clusters.quarantined).sum()), int(clusters.quarantined.sum())
        )
    checked: dict[str, DataFrame] = {}
    if sources[ITEMS_FILE]:
        checked[ITEMS_FILE] = check_items(
            spark, dataset_dir / ITEMS_FILE, sources[ITEMS_FILE], lookup, limits
        ).persist()
    if sources[INTERACTIONS_FILE]:
        item_ids = usable_rows(checked[ITEMS_FILE], ITEMS_FILE) if ITEMS_FILE in checked else None
        path = dataset_dir / INTERACTIONS_FILE
        checked[INTERACTIONS_FILE] = check_interactions(
            spark, path, sources[INTERACTIONS_FILE], item_ids
        ).persist()
    for file, frame in checked.items():
        problems, report.files[file] = spark_row_problems(frame, file, sources[file])
        report.problems += problems
    media_checked = None
    if ITEMS_FILE in checked:
        media_checked = check_media(
            usable_rows(checked[ITEMS_FILE], ITEMS_FILE, QUARANTINE_ROW), dataset_dir, limits
        ).persist()
        items_out, records = media_outputs(media_checked)
        report.problems += spark_warnings(checked[ITEMS_FILE], records, limits)
        report.media_problems = records.count()
    with atomic_directory(out_dir) as staging:
        if not report.fatal:
            (staging / QUARANTINE_DIR).mkdir()
            pq.write_table(clusters.usable_table(), staging / CLUSTERS_FILE)
            pq.write_table(clusters.quarantine_table(), staging / QUARANTINE_DIR / CLUSTERS_FILE)
            write_dataframe_atomic(items_out, staging / ITEMS_FILE)
            write_dataframe_atomic(records, staging / QUARANTINE_DIR / MEDIA_QUARANTINE_FILE)
            write_dataframe_atomic(
                usable_rows(checked[INTERACTIONS_FILE], INTERACTIONS_FILE), staging / INTERACTIONS_FILE
            )
            for file, frame in checked.items():
                write_dataframe_atomic(
                    quarantined_rows(frame, sources[file]), staging / QUARANTINE_DIR / file
                )
        write_json_atomic(report.to_dict(), staging / REPORT_FILE)
    for frame in (*checked.values(), media_checked):
        if frame is not None:
            frame.unpersist()
    return report


def job_stats(report: ValidationReport) -> ValidateStats:
    return ValidateStats(
        input_rows={f: c.input_rows for f, c in report.files.items()},
        output_rows={f: c.usable_rows for f, c in report.files.items()},
        quarantined_rows={f: c.quarantined_rows for f, c in report.files.items()},
        media_problems=report.media_problems,
        fatal=report.fatal,
    )

"""DataFrame functions of the Spark validate job: typing, row checks, reasons, media, outputs.

Each mirrors the pandas engine (:mod:`serendipity.validation.table`, :mod:`serendipity.validation.checks`)
check for check, so both engines flag the same rows with the same reasons.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from serendipity.config import InputLimitsConfig
from serendipity.schema import (
    INTERACTIONS_FILE,
    ITEMS_FILE,
    LEVEL_COLUMNS,
    NUM_LEVELS,
    QUARANTINE_COLUMN,
    QUARANTINE_REASON,
    QUARANTINE_ROW,
    QUARANTINE_SOURCE,
    SCHEMAS,
)
from serendipity.validation.media_paths import (
    MEDIA_PATH,
    PROBLEM_SUFFIX,
    check_media_frame,
)
from serendipity.validation.rules import (
    DUPLICATE_INTERACTION,
    DUPLICATE_ITEM,
    LENGTH_LIMITED_COLUMNS,
    MEDIA_COLUMNS,
    REASON_SEPARATOR,
    SATISFACTION_OUT_OF_RANGE,
    UNKNOWN_ITEM,
    Check,
    cast_check,
    null_check,
    over_long_check,
    parse_timestamps,
    row_checks,
    type_kind,
    unusable_cluster_check,
    wrong_parent_check,
)
from serendipity.validation.table import dataset_part_files
from serendipity.validation.text import length_limit
from spark_jobs.common import spark_type

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

TYPED_PREFIX = "__typed_"
QUARANTINED = "__quarantined"


def typed(column: str) -> str:
    return TYPED_PREFIX + column


def read_with_row_numbers(spark: SparkSession, path: Path) -> DataFrame:
    """The table plus ``_row_number``: its 0-based position, counting part files in the pandas order."""
    from pyspark.sql import functions as F

    parts = dataset_part_files(path)
    frame = spark.read.parquet(*[str(part) for part in parts])
    offsets, offset = {}, 0
    for part in parts:
        offsets[part.name], offset = offset, offset + pq.read_metadata(part).num_rows
    file_name = F.element_at(F.split(F.col("_metadata.file_path"), "/"), -1)
    offset_of = F.create_map(*[F.lit(x) for pair in offsets.items() for x in pair])
    return frame.select("*", (offset_of[file_name] + F.col("_metadata.row_index")).alias(QUARANTINE_ROW))


def add_typed_columns(
    frame: DataFrame, file: str, source: pa.Schema
) -> tuple[DataFrame, dict[Check, Column]]:
    """Cast every schema column as the pandas engine does; flag nulls and uncastable values."""
    from pyspark.sql import functions as F

    @F.pandas_udf("timestamp")
    def parse(values):  # noqa: ANN001, ANN202 (pandas_udf reads the type hints otherwise)
        return parse_timestamps(values)

    flags: dict[Check, Column] = {}
    for target in SCHEMAS[file]:
        name, target_kind = target.name, type_kind(target.type)
        if name not in source.names:
            frame = frame.withColumn(typed(name), F.lit(None).cast(spark_type(target.type)))
            continue
        kind, raw = type_kind(source.field(name).type), F.col(f"`{name}`")
        missing = raw.isNull() | F.isnan(raw) if kind == "float" else raw.isNull()
        uncastable = F.lit(False)
        if target_kind == "int":
            if kind == "float":
                uncastable = ~missing & ((raw != F.floor(raw)) | (F.abs(raw) >= 2.0**63))
            value = F.when(~missing & ~uncastable, raw.try_cast("long"))
        elif target_kind == "float":
            value = F.when(~missing, raw.cast("double"))
        elif target_kind == "timestamp":
            value = raw.cast("timestamp") if kind in ("timestamp", "date") else parse(raw)
            uncastable = ~missing & value.isNull()
        else:
            value = raw.cast(spark_type(target.type))
        frame = frame.withColumn(typed(name), value)
        if check := null_check(file, name):
            flags[check] = missing
        if check := cast_check(file, name):
            flags[check] = uncastable
    return frame, flags


def duplicate_flag(keys: list[str]) -> Column:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    window = Window.partitionBy(*[typed(k) for k in keys]).orderBy(QUARANTINE_ROW)
    complete = F.lit(True)
    for key in keys:
        complete = complete & F.col(typed(key)).isNotNull()
    return complete & (F.row_number().over(window) > 1)


def with_reasons(frame: DataFrame, file: str, flags: dict[Check, Column]) -> DataFrame:
    """Materialise the flags, then join reasons and columns in the order of :func:`row_checks`."""
    from pyspark.sql import functions as F

    names = {check: f"__flag{i}" for i, check in enumerate(row_checks(file)) if check in flags}
    frame = frame.select("*", *[F.coalesce(flags[c], F.lit(False)).alias(n) for c, n in names.items()])
    reasons = [F.when(F.col(n), F.lit(c.reason)) for c, n in names.items()]
    columns = [F.when(F.col(n), F.lit(c.column)) for c, n in names.items()]
    quarantined = F.lit(False)
    for name in names.values():
        quarantined = quarantined | F.col(name)
    return frame.select(
        "*",
        F.concat_ws(REASON_SEPARATOR, *reasons).alias(QUARANTINE_REASON),
        F.concat_ws(REASON_SEPARATOR, *columns).alias(QUARANTINE_COLUMN),
        F.lit(file).alias(QUARANTINE_SOURCE),
        quarantined.alias(QUARANTINED),
    )


def tree_flags(items: DataFrame, clusters: DataFrame) -> tuple[DataFrame, dict[Check, Column]]:
    """Join each of c1..c4 to the usable clusters (broadcast) and flag unknown levels and wrong parents."""
    from pyspark.sql import functions as F

    flags: dict[Check, Column] = {}
    for level, column in enumerate(LEVEL_COLUMNS, start=1):
        lookup = clusters.where(F.col("level") == level).select(
            F.col("cluster_id").alias(f"__id{level}"), F.col("parent_id").alias(f"__parent{level}")
        )
        items = items.join(F.broadcast(lookup), F.col(typed(column)) == F.col(f"__id{level}"), "left")
        flags[unusable_cluster_check(level)] = (
            F.col(typed(column)).isNotNull() & F.col(f"__id{level}").isNull()
        )
    for level in range(2, NUM_LEVELS + 1):
        both = F.col(f"__id{level}").isNotNull() & F.col(f"__id{level - 1}").isNotNull()
        parent_column = typed(LEVEL_COLUMNS[level - 2])
        flags[wrong_parent_check(level)] = both & ~F.col(f"__parent{level}").eqNullSafe(F.col(parent_column))
    return items, flags


def over_long_flag(column: str) -> str:
    return f"__over_long_{column}"


def length_limits(frame: DataFrame, limits: InputLimitsConfig) -> tuple[DataFrame, dict[Check, Column]]:
    """As :func:`serendipity.validation.text.enforce_length_limits`: over-long title and text values are
    flagged (quarantine) or cut to the limit, with ``__over_long_<column>`` marking them for the warning."""
    from pyspark.sql import functions as F

    flags: dict[Check, Column] = {}
    for column in LENGTH_LIMITED_COLUMNS:
        limit, value = length_limit(limits, column), F.col(typed(column))
        frame = frame.withColumn(over_long_flag(column), F.coalesce(F.length(value) > limit, F.lit(False)))
        if limits.over_long_text == "quarantine":
            flags[over_long_check(column)] = F.col(over_long_flag(column))
        else:
            cut = F.when(F.col(over_long_flag(column)), F.substring(value, 1, limit)).otherwise(value)
            frame = frame.withColumn(typed(column), cut)
    return frame, flags


def check_items(
    spark: SparkSession, path: Path, source: pa.Schema, clusters: DataFrame | None, limits: InputLimitsConfig
) -> DataFrame:
    frame, flags = add_typed_columns(read_with_row_numbers(spark, path), ITEMS_FILE, source)
    flags[Check("item_id", DUPLICATE_ITEM)] = duplicate_flag(["item_id"])
    if clusters is not None:
        frame, tree = tree_flags(frame, clusters)
        flags.update(tree)
    frame, length_flags = length_limits(frame, limits)
    flags.update(length_flags)
    return with_reasons(frame, ITEMS_FILE, flags)


def check_interactions(
    spark: SparkSession, path: Path, source: pa.Schema, item_ids: DataFrame | None
) -> DataFrame:
    from pyspark.sql import functions as F

    frame, flags = add_typed_columns(read_with_row_numbers(spark, path), INTERACTIONS_FILE, source)
    satisfaction = F.col(typed("satisfaction"))
    flags[Check("satisfaction", SATISFACTION_OUT_OF_RANGE)] = satisfaction.isNotNull() & (
        (satisfaction < 0.0) | (satisfaction > 1.0)
    )
    flags[Check("ts", DUPLICATE_INTERACTION)] = duplicate_flag(["user_id", "item_id", "ts"])
    if item_ids is not None:
        known = item_ids.select(F.col("item_id").alias("__known_item")).distinct()
        frame = frame.join(known, F.col(typed("item_id")) == F.col("__known_item"), "left")
        flags[Check("item_id", UNKNOWN_ITEM)] = (
            F.col(typed("item_id")).isNotNull() & F.col("__known_item").isNull()
        )
    return with_reasons(frame, INTERACTIONS_FILE, flags)


def usable_rows(checked: DataFrame, file: str, *extra: str) -> DataFrame:
    from pyspark.sql import functions as F

    usable = checked.where(~F.col(QUARANTINED))
    columns = [F.col(typed(f.name)).cast(spark_type(f.type)).alias(f.name) for f in SCHEMAS[file]]
    return usable.select(*columns, *extra)


def quarantined_rows(checked: DataFrame, source: pa.Schema) -> DataFrame:
    from pyspark.sql import functions as F

    extra = (QUARANTINE_REASON, QUARANTINE_COLUMN, QUARANTINE_SOURCE, QUARANTINE_ROW)
    return checked.where(F.col(QUARANTINED)).select(*[F.col(f"`{n}`") for n in (*source.names, *extra)])


def check_media(usable_items: DataFrame, dataset_dir: Path, limits: InputLimitsConfig) -> DataFrame:
    """Open every media file on the executors, within ``limits``; bad paths get a ``<column>__problem``."""
    from pyspark.sql.types import StringType, StructField, StructType

    problem_fields = [StructField(c + PROBLEM_SUFFIX, StringType()) for c in MEDIA_COLUMNS]
    schema = StructType([*usable_items.schema.fields, *problem_fields])
    root = str(dataset_dir)

    def check_batches(batches):  # noqa: ANN001, ANN202
        for batch in batches:
            yield check_media_frame(batch, root, limits)

    return usable_items.mapInPandas(check_batches, schema)


def media_outputs(checked: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Usable items with bad media paths set to null, and one record per bad path."""
    from pyspark.sql import functions as F

    items = checked.select(
        *[
            F.when(F.col(c + PROBLEM_SUFFIX).isNull(), F.col(c)).alias(c) if c in MEDIA_COLUMNS else F.col(c)
            for c in SCHEMAS[ITEMS_FILE].names
        ]
    )
    records = [
        checked.where(F.col(c + PROBLEM_SUFFIX).isNotNull()).select(
            F.col("item_id"),
            F.col(c).alias(MEDIA_PATH),
            F.col(c + PROBLEM_SUFFIX).alias(QUARANTINE_REASON),
            F.lit(c).alias(QUARANTINE_COLUMN),
            F.lit(ITEMS_FILE).alias(QUARANTINE_SOURCE),
            F.col(QUARANTINE_ROW),
        )
        for c in MEDIA_COLUMNS
    ]
    return items, records[0].unionByName(records[1])

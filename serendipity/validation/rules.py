"""Engine-agnostic validation rules: file-level type checks, the ordered row checks, timestamp parsing.

Both the pandas validator (:mod:`serendipity.validation`) and the Spark job evaluate the checks
listed by :func:`row_checks` and join the reasons of a quarantined row in that order, so their
outputs are identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import pandas as pd
import pyarrow as pa

from serendipity.schema import (
    CLUSTERS_FILE,
    INTERACTIONS_FILE,
    ITEMS_FILE,
    LEVEL_COLUMNS,
    NUM_LEVELS,
    REQUIRED_COLUMNS,
    SCHEMAS,
)

REASON_SEPARATOR = "; "
# Epoch seconds beyond this (about years 1678..2261) cannot be represented and count as unparsable.
MAX_EPOCH_SECONDS = 9.2e9
MEDIA_COLUMNS: tuple[str, ...] = ("thumbnail_path", "video_path")
# Items columns with a length limit, ``limits.max_<column>_chars``.
LENGTH_LIMITED_COLUMNS: tuple[str, ...] = ("title", "text")

LEVEL_OUT_OF_RANGE = f"level outside 1..{NUM_LEVELS}"
EMPTY_DESCRIPTION = "description is empty"
DUPLICATE_CLUSTER = "duplicate cluster_id"
DUPLICATE_DESCRIPTION = "duplicate description"
ROOT_WITH_PARENT = "level-1 cluster has a parent"
MISSING_PARENT = "orphan: level 2-4 cluster without parent_id"
UNKNOWN_PARENT = "orphan: parent_id names no cluster"
WRONG_LEVEL_PARENT = "parent is not exactly one level above"
PARENT_CYCLE = "cycle in parent links"
QUARANTINED_PARENT = "parent cluster is quarantined"
DUPLICATE_ITEM = "duplicate item_id"
SATISFACTION_OUT_OF_RANGE = "satisfaction outside [0, 1]"
DUPLICATE_INTERACTION = "duplicate (user_id, item_id, ts)"
UNKNOWN_ITEM = "item_id is not a usable item"
EMPTY_TITLE = "title is empty"


@dataclass(frozen=True)
class Check:
    """One row-level rule: rows it flags are quarantined with ``reason`` against ``column``."""

    column: str
    reason: str


def type_kind(data_type: pa.DataType) -> str:
    """Coarse kind of an Arrow type: int, float, string, bool, timestamp, date, null or other."""
    if pa.types.is_dictionary(data_type):
        return type_kind(data_type.value_type)
    checks = (
        ("int", pa.types.is_integer),
        ("float", pa.types.is_floating),
        ("string", lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)),
        ("bool", pa.types.is_boolean),
        ("timestamp", pa.types.is_timestamp),
        ("date", pa.types.is_date),
        ("null", pa.types.is_null),
    )
    return next((kind for kind, matches in checks if matches(data_type)), "other")


# Source kinds each target kind accepts; values are then cast row by row (failures are quarantined).
ACCEPTED_SOURCE_KINDS: dict[str, frozenset[str]] = {
    "int": frozenset({"int", "float", "null"}),
    "float": frozenset({"int", "float", "null"}),
    "string": frozenset({"string", "null"}),
    "bool": frozenset({"bool", "null"}),
    "timestamp": frozenset({"timestamp", "date", "string", "int", "null"}),
}


def schema_problems(file: str, actual: pa.Schema) -> list[tuple[str, str]]:
    """File-level (fatal) problems as ``(column, message)``: missing required or mistyped columns."""
    problems = []
    for column in REQUIRED_COLUMNS[file]:
        if column not in actual.names:
            expected = SCHEMAS[file].field(column).type
            problems.append((column, f"{file}: required column {column!r} ({expected}) is missing"))
    for field in SCHEMAS[file]:
        if field.name not in actual.names:
            continue
        found = actual.field(field.name).type
        if type_kind(found) not in ACCEPTED_SOURCE_KINDS[type_kind(field.type)]:
            problems.append(
                (field.name, f"{file}: column {field.name!r} has type {found}, expected {field.type}")
            )
    return problems


def cast_check(file: str, column: str) -> Check | None:
    """The check for values present but not castable to the column's type (ints, timestamps)."""
    kind = type_kind(SCHEMAS[file].field(column).type)
    if kind == "int":
        return Check(column, f"{column} is not an integer")
    if kind == "timestamp":
        return Check(column, f"{column} is not a parsable timestamp")
    return None


def null_check(file: str, column: str) -> Check | None:
    """The check for missing values in a non-nullable column (NaN counts as missing for floats)."""
    if SCHEMAS[file].field(column).nullable:
        return None
    return Check(column, f"{column} is null")


def typing_checks(file: str) -> list[Check]:
    """The null and cast checks of every column of ``file``, from its types and nullability."""
    checks = []
    for field in SCHEMAS[file]:
        checks += [c for c in (null_check(file, field.name), cast_check(file, field.name)) if c]
    return checks


def over_long_check(column: str) -> Check:
    """Rows whose ``column`` (one of :data:`LENGTH_LIMITED_COLUMNS`) is longer than its configured limit."""
    return Check(column, f"{column} longer than limits.max_{column}_chars")


def unusable_cluster_check(level: int) -> Check:
    column = LEVEL_COLUMNS[level - 1]
    return Check(column, f"{column} is not a usable level-{level} cluster")


def wrong_parent_check(level: int) -> Check:
    column, parent_column = LEVEL_COLUMNS[level - 1], LEVEL_COLUMNS[level - 2]
    return Check(column, f"{column} is not a child of {parent_column}")


@cache
def row_checks(file: str) -> tuple[Check, ...]:
    """Every row check of ``file`` in the order reasons are joined."""
    checks = typing_checks(file)
    if file == CLUSTERS_FILE:
        checks += [
            Check("level", LEVEL_OUT_OF_RANGE),
            Check("description", EMPTY_DESCRIPTION),
            Check("cluster_id", DUPLICATE_CLUSTER),
            Check("description", DUPLICATE_DESCRIPTION),
            Check("parent_id", ROOT_WITH_PARENT),
            Check("parent_id", MISSING_PARENT),
            Check("parent_id", UNKNOWN_PARENT),
            Check("parent_id", WRONG_LEVEL_PARENT),
            Check("parent_id", PARENT_CYCLE),
            Check("parent_id", QUARANTINED_PARENT),
        ]
    elif file == ITEMS_FILE:
        checks.append(Check("item_id", DUPLICATE_ITEM))
        checks += [unusable_cluster_check(level) for level in range(1, NUM_LEVELS + 1)]
        checks += [wrong_parent_check(level) for level in range(2, NUM_LEVELS + 1)]
        checks += [over_long_check(column) for column in LENGTH_LIMITED_COLUMNS]
    elif file == INTERACTIONS_FILE:
        checks += [
            Check("satisfaction", SATISFACTION_OUT_OF_RANGE),
            Check("ts", DUPLICATE_INTERACTION),
            Check("item_id", UNKNOWN_ITEM),
        ]
    return tuple(checks)


def parse_timestamps(values: pd.Series) -> pd.Series:
    """Parse ISO-8601 strings or epoch seconds into UTC timestamps (microseconds); NaT where unparsable.

    Timezone-naive strings are read as UTC. Used by both engines, so they agree on every value.
    """
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        seconds = pd.to_numeric(values, errors="coerce").astype("float64")
        seconds = seconds.where(seconds.abs() < MAX_EPOCH_SECONDS)
        parsed = pd.to_datetime(seconds, unit="s", utc=True, errors="coerce")
    else:
        text = values.astype("object").where(values.notna(), None)
        parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    return parsed.astype("datetime64[us, UTC]")

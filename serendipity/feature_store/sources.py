"""Checks that the Parquet sources behind the Feast feature views match the data contract."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.dataset as ds

from serendipity.schema import (
    ITEM_META_SCHEMA,
    ITEM_META_VIEW,
    ITEM_SERENDIPITY_VIEW,
    SERENDIPITY_SCHEMA,
    USER_HISTORY_SCHEMA,
    USER_HISTORY_VIEW,
)

if TYPE_CHECKING:
    from feast import FeatureView

CONTRACT_SCHEMAS: dict[str, tuple[str, pa.Schema]] = {
    ITEM_SERENDIPITY_VIEW: ("SERENDIPITY_SCHEMA", SERENDIPITY_SCHEMA),
    USER_HISTORY_VIEW: ("USER_HISTORY_SCHEMA", USER_HISTORY_SCHEMA),
    ITEM_META_VIEW: ("ITEM_META_SCHEMA", ITEM_META_SCHEMA),
}
MAX_ROWS_NAMED = 10


class SourceSchemaError(ValueError):
    """A feature view's source is missing, lacks a column, or holds a column of the wrong type."""


def _compatible(expected: pa.DataType, actual: pa.DataType) -> bool:
    if pa.types.is_timestamp(expected):
        return pa.types.is_timestamp(actual)
    if pa.types.is_list(expected) or pa.types.is_large_list(expected):
        return (pa.types.is_list(actual) or pa.types.is_large_list(actual)) and _compatible(
            expected.value_type, actual.value_type
        )
    return actual == expected


def _null_rows(dataset: ds.Dataset, column: str) -> list[int]:
    values = dataset.to_table(columns=[column]).column(column)
    mask = values.is_null().to_numpy(zero_copy_only=False)
    return [int(row) for row in mask.nonzero()[0][:MAX_ROWS_NAMED]]


def check_view_source(view: FeatureView) -> Path:
    """Fail with the file, column and rows at fault unless ``view``'s source matches its contract schema."""
    schema_name, contract = CONTRACT_SCHEMAS[view.name]
    source = view.batch_source
    path = Path(source.path)
    if not path.exists():
        raise SourceSchemaError(
            f"source of feature view {view.name!r} not found at {path}; run the stage that writes it first"
        )
    dataset = ds.dataset(path, format="parquet")
    keys = [column.name for column in view.entity_columns]
    needed = [*keys, *(feature.name for feature in view.features), source.timestamp_field]
    for column in needed:
        expected = contract.field(column).type
        if column not in dataset.schema.names:
            raise SourceSchemaError(
                f"{path}: column {column!r} is missing (feature view {view.name!r} expects {expected} "
                f"as in {schema_name}); the file has {dataset.schema.names}"
            )
        actual = dataset.schema.field(column).type
        if not _compatible(expected, actual):
            raise SourceSchemaError(
                f"{path}: column {column!r} has type {actual}, feature view {view.name!r} expects "
                f"{expected} (as in {schema_name})"
            )
    for column in (*keys, source.timestamp_field):
        rows = _null_rows(dataset, column)
        if rows:
            raise SourceSchemaError(
                f"{path}: column {column!r} is null in rows {rows} (first {MAX_ROWS_NAMED})"
            )
    return path


def check_sources(views: list[FeatureView]) -> list[Path]:
    return [check_view_source(view) for view in views]

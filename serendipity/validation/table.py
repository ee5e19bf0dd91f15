"""One table under validation (pandas engine): reading, safe casting, row flags, usable/quarantine split."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from serendipity.schema import (
    QUARANTINE_COLUMN,
    QUARANTINE_REASON,
    QUARANTINE_ROW,
    QUARANTINE_SOURCE,
    SCHEMAS,
)
from serendipity.validation.rules import (
    REASON_SEPARATOR,
    Check,
    cast_check,
    null_check,
    parse_timestamps,
    row_checks,
    type_kind,
)

INT64_LIMIT = 2.0**63


def dataset_part_files(path: Path) -> list[Path]:
    """The Parquet files behind a dataset table: the file itself, or a directory's part files in order."""
    if not path.is_dir():
        return [path]
    return sorted(
        p for p in path.rglob("*") if p.is_file() and not p.name.startswith((".", "_")) and p.suffix != ".crc"
    )


def read_table_file(path: Path) -> pa.Table:
    """Read a table file (or a directory of part files, concatenated in :func:`dataset_part_files` order)."""
    tables = [pq.read_table(part) for part in dataset_part_files(path)]
    if not tables:
        raise ValueError(f"{path} holds no Parquet files")
    return pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]


@dataclass
class CoercedColumn:
    values: pd.Series  # pandas values of the target type, missing where null or not castable
    missing: np.ndarray  # null in the source (or NaN in a float source)
    uncastable: np.ndarray  # present in the source but not castable to the target type


def _decoded(array: pa.ChunkedArray) -> pa.ChunkedArray:
    return array.cast(array.type.value_type) if pa.types.is_dictionary(array.type) else array


def _as_float(array: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(array.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype="float64")


def _coerce_int(array: pa.ChunkedArray) -> CoercedColumn:
    kind = type_kind(array.type)
    if kind == "float":
        floats = _as_float(array)
        missing = np.isnan(floats)
        with np.errstate(invalid="ignore"):
            uncastable = ~missing & ((np.floor(floats) != floats) | (np.abs(floats) >= INT64_LIMIT))
        values = pd.Series(floats).where(~(missing | uncastable)).astype("Int64")
        return CoercedColumn(values, missing, uncastable)
    missing = array.is_null().to_numpy(zero_copy_only=False)
    uncastable = np.zeros(len(array), dtype=bool)
    if kind == "null":
        return CoercedColumn(pd.Series(pd.NA, index=range(len(array)), dtype="Int64"), missing, uncastable)
    if array.type == pa.uint64():
        uncastable = pc.greater(array, INT64_LIMIT - 1).fill_null(False).to_numpy(zero_copy_only=False)
    ints = array.cast(pa.int64(), safe=False).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    return CoercedColumn(ints.where(~uncastable).astype("Int64"), missing, uncastable)


def _coerce_timestamp(array: pa.ChunkedArray) -> CoercedColumn:
    kind = type_kind(array.type)
    missing = array.is_null().to_numpy(zero_copy_only=False)
    if kind in ("timestamp", "date"):
        if kind == "date":
            array = array.cast(pa.timestamp("us"))
        values = array.cast(pa.timestamp("us", tz="UTC"), safe=False).to_pandas()
    elif kind == "null":
        values = pd.Series(pd.NaT, index=range(len(array)), dtype="datetime64[us, UTC]")
    else:
        values = parse_timestamps(array.to_pandas())
    values = pd.Series(values).reset_index(drop=True).astype("datetime64[us, UTC]")
    return CoercedColumn(values, missing, ~missing & values.isna().to_numpy())


def coerce_column(array: pa.ChunkedArray, target: pa.DataType) -> CoercedColumn:
    """Cast a source column to ``target`` where safe; report nulls and uncastable values separately."""
    array = _decoded(array)
    target_kind = type_kind(target)
    if target_kind == "int":
        return _coerce_int(array)
    if target_kind == "timestamp":
        return _coerce_timestamp(array)
    no_failures = np.zeros(len(array), dtype=bool)
    if target_kind == "float":
        floats = _as_float(array)
        return CoercedColumn(pd.Series(floats), np.isnan(floats), no_failures)
    missing = array.is_null().to_numpy(zero_copy_only=False)
    if target_kind == "bool":
        values = array.cast(pa.bool_()).to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get)
    else:
        values = array.cast(pa.string()).to_pandas().astype("object")
    return CoercedColumn(pd.Series(values).reset_index(drop=True), missing, no_failures)


@dataclass
class TableValidation:
    """Row flags for one table; ``typed`` holds the schema's columns cast to their contract types."""

    file: str
    source: pa.Table
    typed: pd.DataFrame
    flags: dict[Check, np.ndarray] = field(default_factory=dict)

    @classmethod
    def start(cls, file: str, source: pa.Table) -> TableValidation:
        """Cast every schema column and flag nulls in required columns and uncastable values."""
        validation = cls(file, source, pd.DataFrame(index=pd.RangeIndex(source.num_rows)))
        for target in SCHEMAS[file]:
            if target.name not in source.column_names:
                validation.typed[target.name] = pd.Series(pd.NA, index=validation.typed.index, dtype="object")
                continue
            coerced = coerce_column(source.column(target.name), target.type)
            validation.typed[target.name] = coerced.values.array
            if check := null_check(file, target.name):
                validation.flag(check, coerced.missing)
            if check := cast_check(file, target.name):
                validation.flag(check, coerced.uncastable)
        return validation

    def __len__(self) -> int:
        return self.source.num_rows

    def flag(self, check: Check, mask: np.ndarray | pd.Series) -> None:
        if check not in row_checks(self.file):
            raise ValueError(f"{check} is not a listed check of {self.file}")
        mask = np.asarray(mask, dtype=bool)
        self.flags[check] = self.flags[check] | mask if check in self.flags else mask

    @property
    def quarantined(self) -> np.ndarray:
        combined = np.zeros(len(self), dtype=bool)
        for mask in self.flags.values():
            combined |= mask
        return combined

    def usable_frame(self) -> pd.DataFrame:
        return self.typed.loc[~self.quarantined]

    def usable_table(self) -> pa.Table:
        schema = SCHEMAS[self.file]
        frame = self.usable_frame()
        columns = [pa.Array.from_pandas(frame[f.name], type=f.type) for f in schema]
        return pa.Table.from_arrays(columns, schema=schema)

    def quarantine_table(self) -> pa.Table:
        """Every original column of the quarantined rows plus reason, column, source file and row number."""
        rows = np.flatnonzero(self.quarantined)
        reasons = pd.Series("", index=rows, dtype="object")
        columns = pd.Series("", index=rows, dtype="object")
        for check in row_checks(self.file):
            if check not in self.flags:
                continue
            hit = self.flags[check][rows]
            if not hit.any():
                continue
            separator = np.where(reasons[hit] == "", "", REASON_SEPARATOR)
            reasons[hit] = reasons[hit] + separator + check.reason
            columns[hit] = columns[hit] + separator + check.column
        table = self.source.take(pa.array(rows, type=pa.int64()))
        extra = {
            QUARANTINE_REASON: pa.array(reasons.to_numpy(), type=pa.string()),
            QUARANTINE_COLUMN: pa.array(columns.to_numpy(), type=pa.string()),
            QUARANTINE_SOURCE: pa.array([self.file] * len(rows), type=pa.string()),
            QUARANTINE_ROW: pa.array(rows, type=pa.int64()),
        }
        for name, values in extra.items():
            table = table.append_column(name, values)
        return table

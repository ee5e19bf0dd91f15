"""Shared pieces of the dataset adapters: quarantine, id maps, parsing helpers and the atomic writer.

Every adapter reads its sources as text, converts column by column and sets unusable rows aside
in a :class:`Quarantine` with the reason, the column, the source file and the 1-based data row
number (header excluded), so that ``converted + quarantined == source rows`` for every file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from serendipity.io import atomic_directory, write_json_atomic, write_parquet_atomic
from serendipity.schema import (
    CLUSTERS_FILE,
    CLUSTERS_SCHEMA,
    INTERACTIONS_FILE,
    INTERACTIONS_SCHEMA,
    ITEMS_FILE,
    ITEMS_SCHEMA,
    QUARANTINE_COLUMN,
    QUARANTINE_REASON,
    QUARANTINE_ROW,
    QUARANTINE_SOURCE,
    TREE_INFO_FILE,
)

INGEST_QUARANTINE_FILE = "_ingest_quarantine.parquet"
INGEST_SUMMARY_FILE = "_ingest_summary.json"
ID_MAP_ITEMS_FILE = "id_map_items.parquet"
ID_MAP_USERS_FILE = "id_map_users.parquet"
ID_MAP_SCHEMA = pa.schema(
    [pa.field("source_id", pa.string(), nullable=False), pa.field("id", pa.int64(), nullable=False)]
)
_QUARANTINE_META = (QUARANTINE_SOURCE, QUARANTINE_ROW, QUARANTINE_REASON, QUARANTINE_COLUMN)


class IngestError(ValueError):
    """A source cannot be ingested at all (missing file or column, bad mapping, unsafe output dir)."""


@dataclass
class IngestSummary:
    """What an adapter read, wrote and set aside. Per source file: rows = converted + quarantined."""

    source: str
    out_dir: Path
    items: int = 0
    interactions: int = 0
    clusters: int = 0
    placeholder_tree: bool = False
    source_rows: dict[str, int] = field(default_factory=dict)
    converted_rows: dict[str, int] = field(default_factory=dict)
    quarantined_rows: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def quarantined(self) -> int:
        return sum(self.quarantined_rows.values())

    def record(self, source_file: str, source_rows: int, converted_rows: int, quarantine: Quarantine) -> None:
        """Record one source file's counts; a mismatch is a bug in the adapter, so it raises."""
        quarantined = quarantine.count(source_file)
        if converted_rows + quarantined != source_rows:
            raise AssertionError(
                f"{source_file}: {converted_rows} converted + {quarantined} quarantined != {source_rows} rows"
            )
        self.source_rows[source_file] = source_rows
        self.converted_rows[source_file] = converted_rows
        self.quarantined_rows[source_file] = quarantined

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        data["quarantined"] = self.quarantined
        return data


class Quarantine:
    """Collects unusable source rows, every original column kept as text plus where and why."""

    def __init__(self) -> None:
        self._frames: list[pd.DataFrame] = []
        self._counts: dict[str, int] = {}
        self._sources: dict[str, pd.DataFrame] = {}

    def register(self, source_file: str, raw: pd.DataFrame) -> None:
        """Quarantined rows of ``source_file`` are then taken from ``raw`` (by index), as written."""
        self._sources[source_file] = raw

    def add(self, rows: pd.DataFrame, source_file: str, reason: str, column: str | None = None) -> None:
        """Quarantine ``rows``; their index must be the 0-based data row position in the source."""
        if rows.empty:
            return
        if source_file in self._sources:
            rows = self._sources[source_file].loc[rows.index]
        frame = rows.astype(object).where(rows.notna(), None).map(_as_text)
        frame.insert(0, QUARANTINE_SOURCE, source_file)
        frame.insert(1, QUARANTINE_ROW, (rows.index.to_numpy() + 1).astype(str))
        frame.insert(2, QUARANTINE_REASON, reason)
        frame.insert(3, QUARANTINE_COLUMN, column)
        self._frames.append(frame.reset_index(drop=True))
        self._counts[source_file] = self._counts.get(source_file, 0) + len(rows)

    def take(
        self, frame: pd.DataFrame, bad: pd.Series, source_file: str, reason: str, column: str | None = None
    ) -> pd.DataFrame:
        """Quarantine the rows of ``frame`` where ``bad`` is true; return the others."""
        bad = bad.fillna(True).astype(bool)
        self.add(frame[bad], source_file, reason, column)
        return frame[~bad]

    def count(self, source_file: str) -> int:
        return self._counts.get(source_file, 0)

    def to_table(self) -> pa.Table:
        if not self._frames:
            return pa.table({name: pa.array([], pa.string()) for name in _QUARANTINE_META})
        merged = pd.concat(self._frames, ignore_index=True)
        merged = merged.astype(object).where(merged.notna(), None)
        return pa.Table.from_pandas(merged, preserve_index=False, schema=_all_text_schema(merged.columns))


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, list | tuple | np.ndarray | dict):
        return repr(list(value) if isinstance(value, np.ndarray) else value)
    return str(value)


def _all_text_schema(columns: pd.Index) -> pa.Schema:
    return pa.schema([pa.field(str(name), pa.string()) for name in columns])


# --- parsing helpers -----------------------------------------------------------------------------


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise IngestError(f"source file not found: {path}")
    return path


def require_columns(frame: pd.DataFrame, columns: list[str] | tuple[str, ...], path: Path | str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise IngestError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(frame.columns)}")


def read_csv_text(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """Read a CSV with every value as written (text, empty string for blanks) and check its columns."""
    frame = pd.read_csv(require_file(path), dtype=str, keep_default_na=False, na_filter=False)
    require_columns(frame, columns, path)
    return frame.reset_index(drop=True)


def read_source_csv(path: Path, columns: tuple[str, ...], quarantine: Quarantine) -> pd.DataFrame:
    """:func:`read_csv_text`, registering the file's original columns with ``quarantine``."""
    frame = read_csv_text(path, columns)
    quarantine.register(path.name, frame)
    return frame


def parse_int(values: pd.Series) -> pd.Series:
    """Parse integer ids; anything else (blank, fractional, text) becomes NA."""
    numbers = pd.to_numeric(values.replace("", None), errors="coerce")
    whole = numbers.notna() & np.isfinite(numbers.astype(float)) & (numbers == numbers.round())
    return numbers.where(whole).astype("Int64")


def parse_float(values: pd.Series) -> pd.Series:
    numbers = pd.to_numeric(values.replace("", None), errors="coerce").astype(float)
    return numbers.where(np.isfinite(numbers))


def epoch_to_timestamp(values: pd.Series, unit: str = "s") -> pd.Series:
    """Epoch numbers (``s``/``ms``/``us``) to UTC microsecond timestamps; unparsable values become NaT."""
    numbers = parse_float(values)
    stamps = pd.to_datetime(numbers, unit=unit, utc=True, errors="coerce")
    return stamps.astype("datetime64[us, UTC]")


def assign_ids(source_ids: pd.Series, existing: pd.DataFrame | None) -> tuple[pd.Series, pd.DataFrame]:
    """Map string ids to stable int64 ids: ids already in ``existing`` keep theirs, new ones (sorted)
    get the next free ids. Returns the mapped ids and the full mapping (``source_id``, ``id``)."""
    mapping = (
        existing[["source_id", "id"]].copy()
        if existing is not None
        else pd.DataFrame({"source_id": pd.Series(dtype=str), "id": pd.Series(dtype="int64")})
    )
    known = set(mapping["source_id"])
    new = sorted(set(source_ids.dropna().astype(str)) - known)
    start = int(mapping["id"].max()) + 1 if len(mapping) else 0
    added = pd.DataFrame({"source_id": new, "id": np.arange(start, start + len(new), dtype="int64")})
    mapping = pd.concat([mapping, added], ignore_index=True)
    lookup = dict(zip(mapping["source_id"], mapping["id"], strict=True))
    return source_ids.astype(str).map(lookup).astype("int64"), mapping


def load_id_map(out_dir: Path, file_name: str) -> pd.DataFrame | None:
    path = out_dir / file_name
    return pq.read_table(path).to_pandas() if path.is_file() else None


def first_time_per_item(item_ids: pd.Series, stamps: pd.Series) -> pd.Series:
    """Earliest timestamp per item id (index: item id)."""
    return (
        pd.DataFrame({"item_id": item_ids.to_numpy(), "ts": stamps.to_numpy()}).groupby("item_id")["ts"].min()
    )


# --- output ------------------------------------------------------------------------------------


def check_output_dir(source_dir: Path, out_dir: Path) -> None:
    """Refuse outputs that would replace the source or a directory that is not a dataset."""
    source, out = source_dir.resolve(), out_dir.resolve()
    if out == source or out in source.parents or source in out.parents:
        raise IngestError(f"output directory {out} must not contain or sit inside the source {source}")
    if out.is_dir() and any(out.iterdir()) and not (out / ITEMS_FILE).exists():
        raise IngestError(f"output directory {out} is not empty and holds no dataset; refusing to replace it")


def to_contract_table(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """Select and order the contract columns and cast them to the exact Arrow schema."""
    missing = [name for name in schema.names if name not in frame.columns]
    if missing:
        raise AssertionError(f"adapter produced no column(s) {missing}")
    selected = frame[list(schema.names)].reset_index(drop=True)
    for schema_field in schema:
        if not schema_field.nullable and selected[schema_field.name].isna().any():
            raise AssertionError(f"adapter produced nulls in non-nullable column {schema_field.name}")
    return pa.Table.from_pandas(selected, schema=schema, preserve_index=False)


@dataclass
class DatasetTables:
    """The contract tables an adapter produced, ready to be written."""

    clusters: pd.DataFrame
    items: pd.DataFrame
    interactions: pd.DataFrame
    extra_tables: dict[str, pa.Table] = field(default_factory=dict)


def write_dataset(
    out_dir: Path,
    tables: DatasetTables,
    quarantine: Quarantine,
    summary: IngestSummary,
    before_swap: Callable[[Path], None] | None = None,
) -> IngestSummary:
    """Write the whole dataset into a temporary directory that replaces ``out_dir`` in one rename."""
    summary.items, summary.interactions = len(tables.items), len(tables.interactions)
    summary.clusters = len(tables.clusters)
    with atomic_directory(out_dir) as tmp:
        write_parquet_atomic(to_contract_table(tables.clusters, CLUSTERS_SCHEMA), tmp / CLUSTERS_FILE)
        write_parquet_atomic(to_contract_table(tables.items, ITEMS_SCHEMA), tmp / ITEMS_FILE)
        write_parquet_atomic(
            to_contract_table(tables.interactions, INTERACTIONS_SCHEMA), tmp / INTERACTIONS_FILE
        )
        write_parquet_atomic(quarantine.to_table(), tmp / INGEST_QUARANTINE_FILE)
        for name, table in tables.extra_tables.items():
            write_parquet_atomic(table, tmp / name)
        if summary.placeholder_tree:
            write_json_atomic({"placeholder": True, "source": summary.source}, tmp / TREE_INFO_FILE)
        if before_swap is not None:
            before_swap(tmp)
        write_json_atomic(summary.to_dict(), tmp / INGEST_SUMMARY_FILE)
    return summary


def empty_interactions() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=object) for name in INTERACTIONS_SCHEMA.names})


def id_map_table(mapping: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(mapping[["source_id", "id"]], schema=ID_MAP_SCHEMA, preserve_index=False)

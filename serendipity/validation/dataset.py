"""Validate a dataset directory against the contract (pandas engine) and split usable from quarantined rows.

``validate_to(dataset_dir, out_dir)`` runs :func:`validate_dataset` then :func:`write_validation`.
Output layout (also produced by ``spark_jobs/validate.py``): ``{clusters,items,interactions}.parquet``
in the contract's Arrow schemas, ``quarantine/<file>.parquet`` (original columns + reason, column,
source file, row number), ``quarantine/media.parquet`` (media paths set to null) and
``validation_report.json``. For every file, usable + quarantined rows == input rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
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
    SCHEMAS,
)
from serendipity.validation.checks import check_clusters, check_interactions, check_items
from serendipity.validation.media_paths import (
    MEDIA_PATH,
    PROBLEM_SUFFIX,
    check_media_frame,
    media_records,
    media_table,
)
from serendipity.validation.media_probe import MediaProbe, probe_media_file
from serendipity.validation.report import (
    MAX_EXAMPLES,
    FileCounts,
    Problem,
    ValidationReport,
    describe_value,
    source_values,
    warning_for_rows,
)
from serendipity.validation.rules import EMPTY_TITLE, MEDIA_COLUMNS, row_checks, schema_problems
from serendipity.validation.table import TableValidation, dataset_part_files, read_table_file
from serendipity.validation.text import enforce_length_limits

QUARANTINE_DIR = "quarantine"
MEDIA_QUARANTINE_FILE = "media.parquet"
REPORT_FILE = "validation_report.json"


@dataclass
class ValidationResult:
    report: ValidationReport
    usable: dict[str, pa.Table] = field(default_factory=dict)
    quarantine: dict[str, pa.Table] = field(default_factory=dict)
    media: pa.Table | None = None


def inspect_file(dataset_dir: Path, file: str) -> tuple[pa.Schema | None, list[Problem]]:
    """Check one contract file from its footers only: a missing or unreadable file, or a missing or
    mistyped column, is fatal (``None`` schema). Warnings name columns outside the contract."""
    path = dataset_dir / file
    if not path.exists():
        return None, [Problem(file, "*", f"{file}: file not found in {dataset_dir}", "fatal", 0)]
    try:
        parts = dataset_part_files(path)
        schema = pq.read_schema(parts[0]) if parts else None
        num_rows = sum(pq.read_metadata(part).num_rows for part in parts)
    except (OSError, ValueError, pa.ArrowException) as error:
        return None, [Problem(file, "*", f"{file}: unreadable Parquet: {error}", "fatal", 0)]
    if schema is None:
        return None, [Problem(file, "*", f"{file}: no Parquet files in {path}", "fatal", 0)]
    fatal = [
        Problem(file, column, message, "fatal", num_rows) for column, message in schema_problems(file, schema)
    ]
    extra = [
        Problem(file, column, "column is not in the contract (kept in quarantine only)", "warning", num_rows)
        for column in schema.names
        if column not in SCHEMAS[file].names
    ]
    return (None if fatal else schema), fatal + extra


def open_table(dataset_dir: Path, file: str) -> tuple[pa.Table | None, list[Problem]]:
    """:func:`inspect_file`, then read the whole table (``None`` with a fatal problem)."""
    schema, problems = inspect_file(dataset_dir, file)
    if schema is None:
        return None, problems
    try:
        return read_table_file(dataset_dir / file), problems
    except (OSError, ValueError, pa.ArrowException) as error:
        return None, [*problems, Problem(file, "*", f"{file}: unreadable Parquet: {error}", "fatal", 0)]


def row_problems(validation: TableValidation) -> list[Problem]:
    """One problem per check that flagged rows, with the first rows and their original values."""
    problems = []
    for check in row_checks(validation.file):
        mask = validation.flags.get(check)
        if mask is None or not mask.any():
            continue
        rows = np.flatnonzero(mask)[:MAX_EXAMPLES].tolist()
        values = source_values(validation.source, check.column, rows)
        problems.append(
            Problem(validation.file, check.column, check.reason, "quarantined", int(mask.sum()), rows, values)
        )
    return problems


def media_problems(records: pd.DataFrame) -> list[Problem]:
    problems = []
    for (column, reason), group in records.groupby([QUARANTINE_COLUMN, QUARANTINE_REASON], sort=False):
        head = group.head(MAX_EXAMPLES)
        problems.append(
            Problem(
                ITEMS_FILE,
                column,
                f"{reason} (path set to null)",
                "warning",
                len(group),
                head[QUARANTINE_ROW].tolist(),
                [describe_value(v) for v in head[MEDIA_PATH]],
            )
        )
    return problems


def _null_bad_media(
    items: TableValidation, dataset_dir: Path, limits: InputLimitsConfig, probe: MediaProbe
) -> pd.DataFrame:
    """Check media of usable items; null the bad paths in place; return the media records."""
    usable = items.typed.loc[~items.quarantined, ["item_id", *MEDIA_COLUMNS]]
    checked = check_media_frame(usable, str(dataset_dir), limits, probe)
    for column in MEDIA_COLUMNS:
        bad_index = checked.index[checked[column + PROBLEM_SUFFIX].notna()]
        items.typed.loc[bad_index, column] = None
    return media_records(checked, ITEMS_FILE, pd.Series(checked.index, index=checked.index))


def validate_dataset(
    dataset_dir: str | Path,
    limits: InputLimitsConfig | None = None,
    *,
    media_probe: MediaProbe = probe_media_file,
) -> ValidationResult:
    """Run every check on ``dataset_dir`` within ``limits`` (the defaults when None); nothing is written.

    ``media_probe`` opens one media file in the probe process (see :mod:`.media_probe`); tests swap it.
    """
    dataset_dir, limits = Path(dataset_dir), limits or InputLimitsConfig()
    report = ValidationReport(str(dataset_dir))
    tables: dict[str, pa.Table | None] = {}
    for file in DATASET_FILES:
        tables[file], problems = open_table(dataset_dir, file)
        report.problems += problems

    validations: dict[str, TableValidation] = {}
    if (clusters_source := tables[CLUSTERS_FILE]) is not None:
        validations[CLUSTERS_FILE] = clusters = TableValidation.start(CLUSTERS_FILE, clusters_source)
        check_clusters(clusters)
    usable_clusters = validations[CLUSTERS_FILE].usable_frame() if CLUSTERS_FILE in validations else None
    records = pd.DataFrame()
    if (items_source := tables[ITEMS_FILE]) is not None:
        validations[ITEMS_FILE] = items = TableValidation.start(ITEMS_FILE, items_source)
        check_items(items, usable_clusters)
        report.problems += enforce_length_limits(items, limits)
        records = _null_bad_media(items, dataset_dir, limits, media_probe)
    usable_items = validations[ITEMS_FILE].usable_frame()["item_id"] if ITEMS_FILE in validations else None
    if (interactions_source := tables[INTERACTIONS_FILE]) is not None:
        validations[INTERACTIONS_FILE] = interactions = TableValidation.start(
            INTERACTIONS_FILE, interactions_source
        )
        check_interactions(interactions, usable_items)

    result = ValidationResult(report)
    for file, validation in validations.items():
        report.problems += row_problems(validation)
        quarantined = int(validation.quarantined.sum())
        report.files[file] = FileCounts(len(validation), len(validation) - quarantined, quarantined)
        result.usable[file] = validation.usable_table()
        result.quarantine[file] = validation.quarantine_table()
    if ITEMS_FILE in validations:
        items = validations[ITEMS_FILE]
        blank_title = items.typed["title"].fillna("x").astype(str).str.strip().eq("").to_numpy()
        report.problems += warning_for_rows(
            ITEMS_FILE, "title", EMPTY_TITLE, blank_title & ~items.quarantined, items.source
        )
        report.problems += media_problems(records)
        report.media_problems = len(records)
        result.media = media_table(records)
    return result


def write_validation(result: ValidationResult, out_dir: str | Path) -> Path:
    """Atomically replace ``out_dir`` with the usable tables, quarantine and report.

    With a fatal problem only the report is written, so no later stage reads stale or partial tables.
    """
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as staging:
        if not result.report.fatal:
            for file, table in result.usable.items():
                pq.write_table(table, staging / file)
            for file, table in result.quarantine.items():
                (staging / QUARANTINE_DIR).mkdir(exist_ok=True)
                pq.write_table(table, staging / QUARANTINE_DIR / file)
            if result.media is not None:
                pq.write_table(result.media, staging / QUARANTINE_DIR / MEDIA_QUARANTINE_FILE)
        write_json_atomic(result.report.to_dict(), staging / REPORT_FILE)
    return out_dir


def validate_to(
    dataset_dir: str | Path, out_dir: str | Path | None = None, limits: InputLimitsConfig | None = None
) -> ValidationReport:
    """Validate ``dataset_dir`` and, when ``out_dir`` is given, write the outputs there."""
    result = validate_dataset(dataset_dir, limits)
    if out_dir is not None:
        write_validation(result, out_dir)
    return result.report

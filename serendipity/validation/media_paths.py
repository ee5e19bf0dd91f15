"""Media path checks: an item with a bad media path stays usable, its path is set to null and recorded.

A path must be relative, inside the dataset and a regular file; the file must then pass
:func:`~serendipity.validation.media_probe.probe_media_file` (limits, decompression bomb, one decode)
within the decode time limit. :func:`check_media_frame` works on any pandas batch of items, so the
Spark job runs it on executors.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

import pandas as pd
import pyarrow as pa

from serendipity.config import InputLimitsConfig
from serendipity.schema import QUARANTINE_COLUMN, QUARANTINE_REASON, QUARANTINE_ROW, QUARANTINE_SOURCE
from serendipity.validation.media_probe import (
    DECODE_TIMEOUT,
    DECODER_CRASHED,
    DECOMPRESSION_BOMB,
    FILE_TOO_LARGE,
    FRAME_TOO_LARGE,
    TOO_MANY_FRAMES,
    UNREADABLE_IMAGE,
    UNREADABLE_VIDEO,
    VIDEO_TOO_LONG,
    MediaProbe,
    MediaProber,
    probe_media_file,
)
from serendipity.validation.rules import MEDIA_COLUMNS

__all__ = [
    "ABSOLUTE_PATH",
    "DECODER_CRASHED",
    "DECODE_TIMEOUT",
    "DECOMPRESSION_BOMB",
    "EMPTY_PATH",
    "FILE_TOO_LARGE",
    "FRAME_TOO_LARGE",
    "MEDIA_PATH",
    "MISSING_FILE",
    "OUTSIDE_DATASET",
    "PROBLEM_SUFFIX",
    "TOO_MANY_FRAMES",
    "UNREADABLE_IMAGE",
    "UNREADABLE_VIDEO",
    "VIDEO_TOO_LONG",
    "check_media_frame",
    "media_problem",
    "media_records",
    "media_table",
]

PROBLEM_SUFFIX = "__problem"
MEDIA_PATH = "path"

EMPTY_PATH = "empty path"
ABSOLUTE_PATH = "absolute path"
OUTSIDE_DATASET = "path resolves outside the dataset directory"
MISSING_FILE = "file is missing"

MEDIA_QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.int64()),
        pa.field(MEDIA_PATH, pa.string()),
        pa.field(QUARANTINE_REASON, pa.string()),
        pa.field(QUARANTINE_COLUMN, pa.string()),
        pa.field(QUARANTINE_SOURCE, pa.string()),
        pa.field(QUARANTINE_ROW, pa.int64()),
    ]
)


def media_problem(raw_path: str, dataset_root: Path, column: str, prober: MediaProber) -> str | None:
    """Why ``raw_path`` (relative to the resolved ``dataset_root``) is not a usable media file, or None."""
    if raw_path.strip() == "":
        return EMPTY_PATH
    if PurePosixPath(raw_path).is_absolute() or PureWindowsPath(raw_path).is_absolute():
        return ABSOLUTE_PATH
    try:
        resolved = (dataset_root / raw_path).resolve()
    except (OSError, ValueError, RuntimeError):
        return MISSING_FILE
    if not resolved.is_relative_to(dataset_root):
        return OUTSIDE_DATASET
    if not resolved.is_file():
        return MISSING_FILE
    return prober.problem(resolved, column)


def check_media_frame(
    items: pd.DataFrame,
    dataset_dir: str,
    limits: InputLimitsConfig | None = None,
    probe: MediaProbe = probe_media_file,
) -> pd.DataFrame:
    """Add ``<media column>__problem`` (reason or None) for each media column present in ``items``.

    ``probe`` opens one file (in a child process, within the decode time limit); tests swap it.
    """
    root = Path(dataset_dir).resolve()
    checked = items.copy()
    with MediaProber(limits or InputLimitsConfig(), probe) as prober:
        for column in MEDIA_COLUMNS:
            values = (
                checked[column] if column in checked else pd.Series(None, index=checked.index, dtype="object")
            )
            checked[column + PROBLEM_SUFFIX] = [
                None if value is None or pd.isna(value) else media_problem(str(value), root, column, prober)
                for value in values
            ]
    return checked


def media_records(checked: pd.DataFrame, source_file: str, row_numbers: pd.Series) -> pd.DataFrame:
    """One record per (item, media column) with a problem, in row then column order."""
    parts = []
    for column in MEDIA_COLUMNS:
        problem = checked[column + PROBLEM_SUFFIX]
        hit = problem.notna()
        parts.append(
            pd.DataFrame(
                {
                    "item_id": checked.loc[hit, "item_id"].astype("int64"),
                    MEDIA_PATH: checked.loc[hit, column].astype("object"),
                    QUARANTINE_REASON: problem[hit].astype("object"),
                    QUARANTINE_COLUMN: column,
                    QUARANTINE_SOURCE: source_file,
                    QUARANTINE_ROW: row_numbers[hit].astype("int64"),
                }
            )
        )
    records = pd.concat(parts, ignore_index=True)
    return records.sort_values([QUARANTINE_ROW, QUARANTINE_COLUMN], kind="stable", ignore_index=True)


def media_table(records: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(records, schema=MEDIA_QUARANTINE_SCHEMA, preserve_index=False)

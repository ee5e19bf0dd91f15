"""The validation report: every problem with its file, column, count and example rows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa

Severity = Literal["fatal", "quarantined", "warning"]
MAX_EXAMPLES = 5


@dataclass(frozen=True)
class Problem:
    """One kind of problem in one column of one file. ``example_rows`` are 0-based row positions."""

    file: str
    column: str
    reason: str
    severity: Severity
    count: int
    example_rows: list[int] = field(default_factory=list)
    example_values: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        if self.severity == "fatal":
            return self.reason
        rows = ", ".join(str(r) for r in self.example_rows)
        more = ", ..." if self.count > len(self.example_rows) else ""
        values = f"; values {', '.join(self.example_values)}" if self.example_values else ""
        outcome = {"quarantined": "quarantined", "warning": "kept"}[self.severity]
        noun = "row" if self.count == 1 else "rows"
        return (
            f"{self.file}: column {self.column!r}: {self.reason}: {self.count} {noun} {outcome} "
            f"(rows {rows}{more}{values})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "message": self.message}


@dataclass(frozen=True)
class FileCounts:
    input_rows: int
    usable_rows: int
    quarantined_rows: int


@dataclass
class ValidationReport:
    dataset_dir: str
    problems: list[Problem] = field(default_factory=list)
    files: dict[str, FileCounts] = field(default_factory=dict)
    media_problems: int = 0

    @property
    def fatal(self) -> bool:
        return any(p.severity == "fatal" for p in self.problems)

    @property
    def clean(self) -> bool:
        return not self.problems

    def problems_in(self, file: str) -> list[Problem]:
        return [p for p in self.problems if p.file == file]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset_dir": self.dataset_dir,
            "fatal": self.fatal,
            "clean": self.clean,
            "files": {name: asdict(counts) for name, counts in self.files.items()},
            "media_problems": self.media_problems,
            "problems": [p.to_dict() for p in self.problems],
        }

    def summary(self) -> str:
        if self.fatal:
            fatal = sum(p.severity == "fatal" for p in self.problems)
            return f"FAILED: {fatal} fatal problem(s); nothing usable was written"
        quarantined = sum(c.quarantined_rows for c in self.files.values())
        if self.clean:
            return "OK: no problems"
        return (
            f"OK with warnings: {quarantined} row(s) quarantined, {self.media_problems} media path(s) "
            f"set to null, {len(self.problems)} problem kind(s)"
        )


def describe_value(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def source_values(source: pa.Table, column: str, rows: list[int]) -> list[str]:
    """The original values of ``column`` at ``rows``, described for the report (none without the column)."""
    if column not in source.column_names:
        return []
    values = source.column(column).take(pa.array(rows, type=pa.int64())).to_pylist()
    return [describe_value(value) for value in values]


def warning_for_rows(
    file: str, column: str, reason: str, mask: np.ndarray, source: pa.Table
) -> list[Problem]:
    """One warning for the rows in ``mask`` that stay usable (none when the mask is empty)."""
    if not mask.any():
        return []
    rows = np.flatnonzero(mask)[:MAX_EXAMPLES].tolist()
    return [
        Problem(file, column, reason, "warning", int(mask.sum()), rows, source_values(source, column, rows))
    ]

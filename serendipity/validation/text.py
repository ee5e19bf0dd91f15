"""Length limits of the items' title and text (``limits.max_title_chars``, ``limits.max_text_chars``).

With ``limits.over_long_text == "truncate"`` an over-long value of a usable row is cut to the limit and
counted in a warning that names the rows; with ``"quarantine"`` the row is quarantined with the reason.
Lengths count characters (code points), as Spark's ``length`` and ``substring`` do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from serendipity.config import InputLimitsConfig
from serendipity.validation.report import Problem, warning_for_rows
from serendipity.validation.rules import LENGTH_LIMITED_COLUMNS, over_long_check
from serendipity.validation.table import TableValidation


def length_limit(limits: InputLimitsConfig, column: str) -> int:
    return int(getattr(limits, f"max_{column}_chars"))


def truncated_reason(column: str) -> str:
    return f"{over_long_check(column).reason} (truncated)"


def over_long(values: pd.Series, limit: int) -> np.ndarray:
    """Rows whose string is longer than ``limit`` characters (null is never over-long)."""
    return pd.to_numeric(values.str.len(), errors="coerce").gt(limit).to_numpy(bool)


def enforce_length_limits(items: TableValidation, limits: InputLimitsConfig) -> list[Problem]:
    """Quarantine or truncate over-long titles and texts; the truncation warnings (usable rows only).

    Runs after every other items check, so the usable rows are known.
    """
    problems = []
    for column in LENGTH_LIMITED_COLUMNS:
        limit = length_limit(limits, column)
        over = over_long(items.typed[column], limit)
        if limits.over_long_text == "quarantine":
            items.flag(over_long_check(column), over)
            continue
        items.typed.loc[over, column] = items.typed.loc[over, column].str.slice(0, limit)
        kept = over & ~items.quarantined
        problems += warning_for_rows(items.file, column, truncated_reason(column), kept, items.source)
    return problems

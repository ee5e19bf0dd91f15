"""Console view of the satisfaction rates by pair class that the aggregates job writes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def print_rates(overall: pd.DataFrame, level: int) -> None:
    """The aggregates job's overall table (one row per pair class) on the console."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Next-item satisfaction by pair class (level L={level}, parent L-1={level - 1})")
    for column in ("class", "pairs", "mean", "std", "95% CI"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for row in overall.itertuples(index=False):
        interval = "n/a" if row.ci_low != row.ci_low else f"[{row.ci_low:.4f}, {row.ci_high:.4f}]"
        std = "n/a" if row.std_satisfaction != row.std_satisfaction else f"{row.std_satisfaction:.4f}"
        table.add_row(row.pair_class, f"{row.count:,}", f"{row.mean_satisfaction:.4f}", std, interval)
    Console().print(table)

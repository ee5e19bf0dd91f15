"""`serendipity ingest` commands: real public datasets and a user's own files into the data contract."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from serendipity.datasets.common import IngestSummary

app = typer.Typer(no_args_is_help=True, help="Convert real datasets into the data contract.")
console = Console()

SOURCE_HELP = "source dataset directory (read only)"
OUT_HELP = "dataset directory to write (replaced atomically; must be empty or a previous dataset)"


def _source_option() -> Path:
    return typer.Option(..., "--source", "-s", exists=True, file_okay=False, help=SOURCE_HELP)


def _out_option() -> Path:
    return typer.Option(..., "--out", "-o", file_okay=False, help=OUT_HELP)


def _run(ingest: Callable[[], IngestSummary]) -> None:
    from serendipity.datasets.common import IngestError

    try:
        summary = ingest()
    except IngestError as error:
        console.print(str(error), style="red", markup=False)
        raise typer.Exit(2) from None
    table = Table(title=f"ingest {summary.source} -> {summary.out_dir}")
    table.add_column("source file")
    table.add_column("rows", justify="right")
    table.add_column("converted", justify="right")
    table.add_column("quarantined", justify="right")
    for name, rows in summary.source_rows.items():
        table.add_row(name, str(rows), str(summary.converted_rows[name]), str(summary.quarantined_rows[name]))
    console.print(table)
    tree = "placeholder tree" if summary.placeholder_tree else "tree"
    console.print(
        f"{summary.items} items, {summary.interactions} interactions, {tree} of {summary.clusters} clusters"
    )
    for note in summary.notes:
        console.print(f"  note: {note}")


@app.command("movielens")
def movielens(source: Path = _source_option(), out: Path = _out_option()) -> None:
    """MovieLens ml-latest-small: ratings, movies (+ tags as text), a placeholder genre tree."""
    from serendipity.datasets.movielens import ingest_movielens

    _run(lambda: ingest_movielens(source, out))


@app.command("kuairec")
def kuairec(
    source: Path = _source_option(),
    out: Path = _out_option(),
    created_at: datetime | None = typer.Option(
        None, "--created-at", help="creation time of every item (default: 2020-07-05, KuaiRec's start), UTC"
    ),
) -> None:
    """KuaiRec item side: captions and the real 3-level categories (4 levels here), no interactions."""
    from datetime import UTC

    from serendipity.datasets.kuairec import DEFAULT_CREATED_AT, ingest_kuairec

    when = DEFAULT_CREATED_AT if created_at is None else created_at.replace(tzinfo=created_at.tzinfo or UTC)
    _run(lambda: ingest_kuairec(source, out, created_at=when))


@app.command("amazon")
def amazon(source: Path = _source_option(), out: Path = _out_option()) -> None:
    """Amazon 2018 Magazine Subscriptions: reviews, metadata, real category paths (4 levels)."""
    from serendipity.datasets.amazon import ingest_amazon

    _run(lambda: ingest_amazon(source, out))


@app.command("generic")
def generic(
    source: Path = _source_option(),
    out: Path = _out_option(),
    mapping: Path = typer.Option(
        ...,
        "--mapping",
        "-m",
        exists=True,
        dir_okay=False,
        help="column mapping YAML (configs/generic_example.yaml)",
    ),
) -> None:
    """Your own items and interactions (CSV or Parquet), mapped column by column."""
    from serendipity.datasets.generic import ingest_generic

    _run(lambda: ingest_generic(source, out, mapping))

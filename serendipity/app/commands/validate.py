"""`serendipity validate DATASET_DIR [--out OUT_DIR]`: check a dataset against the contract."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# Options may follow the dataset argument: `serendipity validate DATASET_DIR --out OUT_DIR`.
app = typer.Typer(
    no_args_is_help=True, help="validate commands", context_settings={"allow_interspersed_args": True}
)


@app.callback(invoke_without_command=True)
def validate(
    dataset_dir: Annotated[
        Path, typer.Argument(help="dataset directory (clusters/items/interactions.parquet)")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", help="write usable rows, quarantine/ and the JSON report here")
    ] = None,
    report: Annotated[Path | None, typer.Option("--report", help="also write the JSON report here")] = None,
) -> None:
    """Report every problem (file, column, count, example rows); exit 1 when a file is unusable."""
    from rich.console import Console
    from rich.table import Table

    from serendipity.io import write_json_atomic
    from serendipity.validation import validate_to

    result = validate_to(dataset_dir, out)
    if report is not None:
        write_json_atomic(result.to_dict(), report)
    console = Console()
    if result.problems:
        table = Table(title=f"validation of {dataset_dir}")
        for heading in ("severity", "file", "column", "problem", "rows", "examples"):
            table.add_column(heading)
        for problem in result.problems:
            examples = ", ".join(str(r) for r in problem.example_rows)
            table.add_row(
                problem.severity, problem.file, problem.column, problem.reason, str(problem.count), examples
            )
        console.print(table)
    for file, counts in result.files.items():
        usable, quarantined = counts.usable_rows, counts.quarantined_rows
        console.print(f"{file}: {counts.input_rows} rows, {usable} usable, {quarantined} quarantined")
    console.print(result.summary())
    if out is not None and not result.fatal:
        console.print(f"written to {out}")
    if result.fatal:
        raise typer.Exit(code=1)

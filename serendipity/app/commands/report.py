"""`serendipity report` (the HTML evaluation report) and `serendipity experiment replay` (offline replay)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from serendipity.config import PipelineConfig

app = typer.Typer(help="Write the evaluation report (HTML + report.json).")


def _load(config: Path) -> PipelineConfig:
    from serendipity.config import ConfigError, load_config

    try:
        return load_config(config)
    except ConfigError as error:
        raise typer.BadParameter(str(error)) from None


@app.callback(invoke_without_command=True)
def report(
    config: Path = typer.Option(..., "--config", "-c", dir_okay=False, help="pipeline YAML"),
    out: Path | None = typer.Option(None, "--out", help="output directory (default: work_dir/reports)"),
) -> None:
    """Write one self-contained HTML page and report.json from every evaluation output present."""
    from rich.console import Console

    from serendipity.eval.report import write_report

    pipeline = _load(config)
    paths = write_report(pipeline, config_path=config, out_dir=out)
    console = Console()
    console.print(f"report: {paths.html}")
    console.print(f"numbers: {paths.json}")


def replay(
    config: Path = typer.Option(..., "--config", "-c", dir_okay=False, help="pipeline YAML"),
) -> None:
    """Hold out each user's last engaged item; score the MLLM's cluster against the baselines."""
    from rich.console import Console
    from rich.table import Table

    from serendipity.eval.replay import ReplayError, run_replay
    from serendipity.layout import WorkLayout

    pipeline = _load(config)
    console = Console()
    try:
        result = run_replay(pipeline)
    except (ReplayError, FileNotFoundError) as error:
        console.print(f"[red]error:[/] {error}", soft_wrap=True)
        raise typer.Exit(1) from None
    for subset, content in result.subsets.items():
        table = Table(title=f"{subset}: {content.cases} held-out next items (hit rate, 95% CI)")
        for column in ("method", "hits", "hit rate", "95% CI"):
            table.add_column(column)
        for name, stats in content.methods.items():
            if stats.mean is None:
                table.add_row(name, "0", "-", "-")
                continue
            interval = f"[{stats.ci_low:.3f}, {stats.ci_high:.3f}]"
            table.add_row(name, f"{stats.hits:.4g}", f"{stats.mean:.3f}", interval)
        console.print(table)
    console.print(f"excluded: {result.excluded}")
    console.print(f"written: {WorkLayout.of(pipeline).replay_path}")

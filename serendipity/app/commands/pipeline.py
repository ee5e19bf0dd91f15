"""`serendipity pipeline run`: every stage in order, skipping the ones whose outputs are current."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True, help="Run the whole pipeline or a subset of stages.")
console = Console()


@app.command("run")
def run(
    config: Path = typer.Option(..., "--config", "-c", exists=True, dir_okay=False, help="pipeline YAML"),
    stages: str | None = typer.Option(None, "--stages", help="comma-separated subset, e.g. aggregates,pairs"),
    force: bool = typer.Option(False, "--force", help="re-run stages even when their outputs are current"),
    settings: list[str] = typer.Option(
        [], "--set", help="override a config key, e.g. --set mllm.max_steps=50 (value parsed as YAML)"
    ),
) -> None:
    """Run the pipeline described by CONFIG."""
    import yaml

    from serendipity.app.pipeline import Stage, UnknownStageError, run_pipeline, select_stages
    from serendipity.config import ConfigError, load_config

    overrides = {}
    for setting in settings:
        key, separator, value = setting.partition("=")
        if not separator or not key:
            console.print(f"[red]--set expects KEY=VALUE, got {setting!r}[/red]")
            raise typer.Exit(2)
        overrides[key.strip()] = yaml.safe_load(value)
    try:
        pipeline_config = load_config(config, overrides)
    except ConfigError as error:
        console.print(str(error), style="red", markup=False)
        raise typer.Exit(2) from None
    selected = [name.strip() for name in stages.split(",") if name.strip()] if stages else None
    try:
        select_stages(selected)
    except UnknownStageError as error:
        raise typer.BadParameter(str(error), param_hint="--stages") from None

    def announce(stage: Stage) -> None:
        console.rule(f"[bold]{stage.name}[/bold]: {stage.summary}")

    results = run_pipeline(pipeline_config, selected, force=force, on_stage=announce)
    table = Table(title=f"pipeline {pipeline_config.name}: {pipeline_config.work_dir}")
    table.add_column("stage")
    table.add_column("status")
    table.add_column("seconds", justify="right")
    for result in results:
        table.add_row(result.name, result.status, f"{result.seconds:.1f}" if result.status == "ran" else "")
    console.print(table)


@app.command("stages")
def list_stages() -> None:
    """List the stages in order."""
    from serendipity.app.pipeline import default_stages

    for stage in default_stages():
        console.print(f"[bold]{stage.name:12}[/bold] {stage.summary}")

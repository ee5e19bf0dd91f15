"""`serendipity jobs run NAME --config ...`: run one Spark job in-process, as spark-submit runs its main."""

from __future__ import annotations

import importlib
from pathlib import Path

import typer

from spark_jobs import SPARK_JOBS

app = typer.Typer(no_args_is_help=True, help="Spark jobs")


@app.command("run")
def run(
    name: str = typer.Argument(..., help=f"one of: {', '.join(SPARK_JOBS)}"),
    config: Path = typer.Option(..., "--config", "-c", exists=True, dir_okay=False, help="pipeline YAML"),
    master: str | None = typer.Option(None, "--master", help="Spark master URL; overrides spark.master"),
) -> None:
    """Run ``spark_jobs.NAME.run`` on the pipeline config."""
    from serendipity.config import ConfigError, load_config, with_overrides

    if name not in SPARK_JOBS:
        choices = ", ".join(SPARK_JOBS)
        raise typer.BadParameter(f"unknown job {name!r}; choose from {choices}", param_hint="NAME")
    try:
        pipeline_config = with_overrides(load_config(config), {"spark.master": master})
    except ConfigError as error:
        raise typer.BadParameter(str(error), param_hint="--config") from None
    importlib.import_module(f"spark_jobs.{name}").run(pipeline_config)

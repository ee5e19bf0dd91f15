"""`serendipity jobs run NAME --config ...`: run one Spark job in-process, as spark-submit runs its main."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, help="Spark jobs")

# The names of the stage table's Spark stages (``spark_job_names``), written out so that the help does
# not import every job; tests/unit/test_pipeline_cli.py keeps the two equal.
SPARK_JOBS_HELP = "one of: validate, build_tree, aggregates, pairs, prior, curate, corpus, user_history"


@app.command("run")
def run(
    name: str = typer.Argument(..., help=SPARK_JOBS_HELP),
    config: Path = typer.Option(..., "--config", "-c", exists=True, dir_okay=False, help="pipeline YAML"),
    master: str | None = typer.Option(None, "--master", help="Spark master URL; overrides spark.master"),
) -> None:
    """Run ``spark_jobs.NAME.run`` on the pipeline config."""
    from serendipity.app.stages import Engine, stages_on
    from serendipity.config import ConfigError, load_config, with_overrides
    from serendipity.logs import run_logged

    jobs = {stage.name: stage for stage in stages_on(Engine.SPARK)}
    if name not in jobs:
        choices = ", ".join(jobs)
        raise typer.BadParameter(f"unknown job {name!r}; choose from {choices}", param_hint="NAME")
    try:
        pipeline_config = with_overrides(load_config(config), {"spark.master": master})
    except ConfigError as error:
        raise typer.BadParameter(str(error), param_hint="--config") from None
    run_logged(name, lambda: jobs[name].run(pipeline_config))

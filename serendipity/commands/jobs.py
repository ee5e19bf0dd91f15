"""`serendipity jobs NAME --config ...`: run a Spark job in-process, exactly as spark-submit would."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(no_args_is_help=True, help="Spark jobs")

JOBS = ("build_tree", "validate", "aggregates", "pairs", "curate", "corpus", "user_history")


@app.command(
    "run",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def run(
    ctx: typer.Context,
    name: str = typer.Argument(..., help=f"one of: {', '.join(JOBS)}"),
) -> None:
    """Run ``spark_jobs.NAME.main`` with the remaining arguments (e.g. ``--config configs/demo.yaml``)."""
    if name not in JOBS:
        raise typer.BadParameter(f"unknown job {name!r}; choose from {', '.join(JOBS)}", param_hint="NAME")
    module = importlib.import_module(f"spark_jobs.{name}")
    module.main(list(ctx.args))

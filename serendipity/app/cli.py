"""The ``serendipity`` command line: each command is a thin call into the library or a job."""

from __future__ import annotations

from enum import StrEnum

import typer

from serendipity.app.commands import (
    experiment,
    explore,
    features,
    ingest,
    jobs,
    mllm,
    pipeline,
    report,
    serve,
    validate,
    world,
)

app = typer.Typer(
    name="serendipity",
    no_args_is_help=True,
    add_completion=False,
    help="Serendipitous recommendation steered by a fine-tuned multimodal LLM.",
)


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


@app.callback()
def main(
    log_format: LogFormat = typer.Option(
        LogFormat.TEXT,
        "--log-format",
        envvar="SERENDIPITY_LOG_FORMAT",
        help="log lines on stderr as text or as one JSON object each (ts, level, logger, message, fields)",
    ),
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        envvar="SERENDIPITY_VERBOSE",
        help="debug lines of our own code and the engines' info lines (Ray Train reports, faiss, Feast)",
    ),
) -> None:
    """Serendipitous recommendation steered by a fine-tuned multimodal LLM."""
    from serendipity.logs import setup_logging

    setup_logging(log_format.value, verbose)  # type: ignore[arg-type]


app.add_typer(world.app, name="world", help="Generate the synthetic short-video world.")
app.add_typer(ingest.app, name="ingest", help="Convert real datasets into the data contract.")
app.add_typer(validate.app, name="validate", help="Check a dataset against the contract.")
app.add_typer(jobs.app, name="jobs", help="Run the Spark jobs (tree, validate, aggregates, pairs, ...).")
app.add_typer(mllm.app, name="mllm", help="Build, fine-tune and evaluate the multimodal LLM.")
app.add_typer(features.app, name="features", help="Feast: apply, materialize, read.")
app.add_typer(experiment.app, name="experiment", help="The paper's offline experiments (ablations).")
app.add_typer(pipeline.app, name="pipeline", help="Run the whole pipeline or a subset of stages.")
app.add_typer(report.app, name="report", help="Write the evaluation report (HTML + report.json).")
app.add_typer(serve.app, name="serve", help="Run and query the Ray Serve endpoint on this machine.")
app.add_typer(explore.app, name="explore", help="The explorer page: its address, its media rendered.")

if __name__ == "__main__":
    app()

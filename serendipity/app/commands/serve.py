"""`serendipity serve`: the Ray Serve endpoint on this machine (start, query, stop) for the demo."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True, help="Run and query the Ray Serve endpoint on this machine.")
console = Console(soft_wrap=True)
ConfigOption = typer.Option(..., "--config", "-c", exists=True, dir_okay=False, help="pipeline YAML")


@app.command("run")
def run(config: Path = ConfigOption) -> None:
    """Local Ray + the Serve app in the foreground (Ctrl-C stops it)."""
    from serving.local import run_foreground

    run_foreground(config.resolve())


@app.command("start")
def start(config: Path = ConfigOption) -> None:
    """Start the endpoint in the background and wait until it is ready (a running one is reused)."""
    from serving.local import start_detached

    try:
        endpoint = start_detached(config)
    except RuntimeError as error:
        console.print(str(error), style="red", markup=False)
        raise typer.Exit(1) from None
    console.print(f"endpoint ready at [bold]{endpoint.url}[/bold] (API docs {endpoint.url}/docs)")
    console.print(f"log: {endpoint.log_path}; stop it with: {endpoint.stop_command()}")


@app.command("admission")
def admission(
    config: Path = ConfigOption,
    listen: str | None = typer.Option(None, "--listen", help="address to listen on; default: serving.host"),
    config_out: Path = typer.Option(
        Path("/tmp/serendipity-admission.cfg"), "--config-out", help="where the HAProxy config is written"
    ),
) -> None:
    """Become the admission front (HAProxy) of a Serve proxy on loopback: a RayService's sidecar."""
    from serendipity.config import load_config
    from serving.admission import exec_front
    from serving.guard import require_token_off_loopback
    from serving.settings import TOKEN_ENV

    serving = load_config(config).serving
    try:
        require_token_off_loopback(listen or serving.host, os.environ.get(TOKEN_ENV), TOKEN_ENV)
        exec_front(serving, config_out, listen)
    except RuntimeError as error:  # AdmissionError, InsecureBindError
        console.print(str(error), style="red", markup=False)
        raise typer.Exit(1) from None


@app.command("query")
def query(
    config: Path = ConfigOption,
    count: int = typer.Option(5, "--count", min=1, help="number of requests"),
    k: int = typer.Option(5, "--k", min=1, help="items per request"),
    url: str | None = typer.Option(None, "--url", help="endpoint; default: the one `serve start` recorded"),
) -> None:
    """Send a handful of real HTTP requests and print the recommendations with cluster and reasoning."""
    from serendipity.config import load_config
    from serving.demo_queries import describe, run_queries
    from serving.local import read_endpoint
    from serving.settings import TOKEN_ENV

    pipeline_config = load_config(config)
    if url is None:
        endpoint = read_endpoint(pipeline_config)
        if endpoint is None:
            console.print(
                f"[red]no running endpoint; start one with: serendipity serve start --config {config}"
            )
            raise typer.Exit(1)
        url = endpoint.url
    queries = run_queries(pipeline_config, url, count, k, token=os.environ.get(TOKEN_ENV))
    console.print(describe(pipeline_config, queries), markup=False, highlight=False)


@app.command("stop")
def stop(config: Path = ConfigOption) -> None:
    """Stop the endpoint `serve start` left running."""
    from serendipity.config import load_config
    from serving.local import stop as stop_endpoint

    endpoint = stop_endpoint(load_config(config))
    console.print(f"stopped {endpoint.url}" if endpoint else "no endpoint was running")

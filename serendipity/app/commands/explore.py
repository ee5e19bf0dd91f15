"""`serendipity explore`: the explorer page of the endpoint `serve start` left running."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True, help="The serendipity explorer page of the running endpoint.")
console = Console(soft_wrap=True)
ConfigOption = typer.Option(..., "--config", "-c", exists=True, dir_okay=False, help="pipeline YAML")


def _running_url(config: Path) -> str:
    from serendipity.config import load_config
    from serving.local import read_endpoint

    endpoint = read_endpoint(load_config(config))
    if endpoint is None:
        console.print(f"[red]no running endpoint; start one with: serendipity serve start --config {config}")
        raise typer.Exit(1)
    return endpoint.url


@app.command("address")
def address(config: Path = ConfigOption) -> None:
    """Print the API's and the explorer's addresses."""
    url = _running_url(config)
    console.print(f"API: {url} (docs {url}/docs)  explorer: {url}/explore  report: {url}/explore/report")


@app.command("render")
def render(config: Path = ConfigOption) -> None:
    """Decode the explorer's thumbnails and prompt frames to files (once; `serve run|start` does it too)."""
    from serendipity.config import load_config
    from serendipity.explorer.rendered_media import render_media, rendered_dir

    pipeline_config = load_config(config)
    counts = render_media(pipeline_config)
    console.print(f"explorer media in {rendered_dir(pipeline_config)}: {counts}")

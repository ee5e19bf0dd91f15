"""`serendipity explore`: the explorer page of the endpoint `serve start` left running."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True, help="The serendipity explorer page of the running endpoint.")
console = Console(soft_wrap=True)
ConfigOption = typer.Option(..., "--config", "-c", exists=True, dir_okay=False, help="pipeline YAML")
SCREENSHOT_K = 8


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
    from serendipity.explorer.media import render_media, rendered_dir

    pipeline_config = load_config(config)
    counts = render_media(pipeline_config)
    console.print(f"explorer media in {rendered_dir(pipeline_config)}: {counts}")


@app.command("screenshot")
def screenshot(
    config: Path = ConfigOption,
    out: Path = typer.Option(Path("docs/explorer.png"), "--out", help="PNG to write"),
    item: int | None = typer.Option(None, "--item", help="context item (default: the first demo query's)"),
    user: int | None = typer.Option(None, "--user", help="user (default: the first demo query's)"),
    url: str | None = typer.Option(None, "--url", help="endpoint; default: the one `serve start` recorded"),
) -> None:
    """Open the explorer in headless Chromium on one request and save a screenshot of the whole page."""
    from serendipity.config import load_config
    from serendipity.explorer.browser import BrowserUnavailable, explorer_url
    from serendipity.explorer.browser import screenshot as take_screenshot
    from serving.demo_queries import demo_requests
    from serving.settings import TOKEN_ENV

    base = url or _running_url(config)
    if item is None or user is None:
        request = demo_requests(load_config(config), count=1)[0]
        item = request["context_item_id"] if item is None else item
        user = request["user_id"] if user is None else user
    try:
        path = take_screenshot(explorer_url(base, item, user, SCREENSHOT_K), out, os.environ.get(TOKEN_ENV))
    except BrowserUnavailable as error:
        console.print(f"[red]{error}")
        raise typer.Exit(1) from None
    console.print(f"explorer screenshot (item {item}, user {user}): {path}")

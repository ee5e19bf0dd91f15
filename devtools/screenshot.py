"""The README's screenshot: the explorer page of a running endpoint in headless Chromium, one request.

    serendipity serve start --config configs/demo.yaml
    .venv/bin/python -m devtools.screenshot --config configs/demo.yaml --out docs/explorer.png
    serendipity serve stop --config configs/demo.yaml

Development tooling (Selenium is a dev extra), hence here and not a ``serendipity`` command. The endpoint
defaults to the one ``serve start`` recorded; ``$SERENDIPITY_API_TOKEN``, when set, is sent on every request.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from devtools.browser import BrowserUnavailable, explorer_url, screenshot

SCREENSHOT_K = 8


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="pipeline YAML")
    parser.add_argument(
        "--out", type=Path, required=True, help="PNG to write (the README's: docs/explorer.png)"
    )
    parser.add_argument(
        "--item", type=int, default=None, help="context item (default: the first demo query's)"
    )
    parser.add_argument("--user", type=int, default=None, help="user (default: the first demo query's)")
    parser.add_argument("--url", default=None, help="endpoint; default: the one `serve start` recorded")
    args = parser.parse_args(argv)

    from serendipity.config import load_config
    from serving.demo_queries import demo_requests
    from serving.local import read_endpoint
    from serving.settings import TOKEN_ENV

    config = load_config(args.config)
    base = args.url
    if base is None:
        endpoint = read_endpoint(config)
        if endpoint is None:
            sys.exit(f"no running endpoint; start one with: serendipity serve start --config {args.config}")
        base = endpoint.url
    item, user = args.item, args.user
    if item is None or user is None:
        request = demo_requests(config, count=1)[0]
        item = request["context_item_id"] if item is None else item
        user = request["user_id"] if user is None else user
    try:
        path = screenshot(explorer_url(base, item, user, SCREENSHOT_K), args.out, os.environ.get(TOKEN_ENV))
    except BrowserUnavailable as error:
        sys.exit(str(error))
    print(f"explorer screenshot (item {item}, user {user}): {path}")


if __name__ == "__main__":
    main()

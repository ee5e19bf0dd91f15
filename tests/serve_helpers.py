"""The serving chain on local Serve, for the Serve tests: the app, its requests, its reconfiguration."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd

from devtools.services import free_port
from serendipity.config import PipelineConfig, load_config, save_config, with_overrides
from serendipity.layout import WorkLayout
from serendipity.schema import ITEMS_FILE, level_column
from serving.settings import TOKEN_ENV, AppArgs

TOKEN = "test-token-7f3a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
APP_NAME = "serendipity"
UNKNOWN_USER = 10**9
# the session's app checks answers, not deadlines, on a machine the other tests keep busy: its ingress
# waits this long for the recommender (the chaos tests run the 300 ms default)
FUNCTIONAL_SETTINGS = {"serving.recommender_timeout_ms": 3000}


@dataclass(frozen=True)
class ServedChain:
    config: PipelineConfig
    config_path: Path
    url: str
    serendipity: pd.DataFrame  # the inference output: item_id -> serendipitous_cluster
    item_cluster: dict[int, int]  # item_id -> level-L cluster, from the catalog
    history: dict[int, list[int]]  # user_id -> latest recent_item_ids snapshot


def serve_chain(config_path: Path) -> ServedChain:
    """The app of ``config_path`` on local Serve, on a free loopback port, with the token set."""
    from ray import serve

    from serendipity.explorer.rendered_media import render_media
    from serving.app import compose

    config = with_overrides(load_config(config_path), FUNCTIONAL_SETTINGS)
    config_path = save_config(config, config_path.with_name(f"{config_path.stem}-served.yaml"))
    layout = WorkLayout.of(config)
    render_media(config)  # the explorer serves files rendered offline, as `serve run` renders them
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    ingress_options = {
        "ray_actor_options": {"num_cpus": 0.1, "runtime_env": {"env_vars": {TOKEN_ENV: TOKEN}}}
    }
    serve.run(
        compose(AppArgs(config_path=str(config_path)), ingress_options), name=APP_NAME, route_prefix="/"
    )
    items = pd.read_parquet(layout.catalog_dir() / ITEMS_FILE)
    histories = pd.read_parquet(layout.user_history_path).sort_values("event_timestamp")
    return ServedChain(
        config,
        config_path,
        f"http://127.0.0.1:{port}",
        pd.read_parquet(layout.serendipity_path),
        dict(zip(items["item_id"], items[level_column(config.mining.level)], strict=True)),
        {
            int(u): [int(i) for i in r]
            for u, r in histories.groupby("user_id")["recent_item_ids"].last().items()
        },
    )


def post(chain: ServedChain, body: dict, headers: dict | None = None) -> httpx.Response:
    return httpx.post(
        f"{chain.url}/recommend", json=body, headers=AUTH if headers is None else headers, timeout=60
    )


def known_pairs(chain: ServedChain, count: int) -> list[tuple[int, int, int]]:
    """(user with history, context item with a serendipity feature, that feature's cluster)."""
    users = sorted(chain.history)[:count]
    rows = chain.serendipity.sort_values("item_id").head(count)
    return [
        (user, int(item), int(cluster))
        for user, item, cluster in zip(users, rows["item_id"], rows["serendipitous_cluster"], strict=False)
    ]


def reconfigure(user_config: dict, app_name: str = APP_NAME) -> None:
    from ray import serve

    serve.get_deployment_handle("RecommenderDeployment", app_name).reconfigure.remote(user_config).result()

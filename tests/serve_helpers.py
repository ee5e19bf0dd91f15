"""The serving chain on local Serve, for the Serve tests: the app, its requests, its reconfiguration."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd

from devtools.services import free_port
from serendipity.config import PipelineConfig, load_config, save_config, with_overrides
from serendipity.layout import WorkLayout
from serendipity.schema import ITEMS_FILE, level_column
from serving.assembly import APP_NAME
from serving.settings import TOKEN_ENV

TOKEN = "test-token-7f3a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
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


@contextmanager
def served_chain(config_path: Path) -> Iterator[ServedChain]:
    """The app of ``config_path`` on local Serve (``serving.assembly.served_app``, no admission front) on
    a free loopback port, with the token set, for the ``with`` block."""
    from serving.assembly import served_app

    config = with_overrides(load_config(config_path), FUNCTIONAL_SETTINGS)
    config_path = save_config(config, config_path.with_name(f"{config_path.stem}-served.yaml"))
    layout = WorkLayout.of(config)
    no_front = config.serving.admission.model_copy(update={"enabled": False})
    serving = config.serving.model_copy(
        update={"host": "127.0.0.1", "port": free_port(), "admission": no_front}
    )
    ingress_options = {
        "ray_actor_options": {"num_cpus": 0.1, "runtime_env": {"env_vars": {TOKEN_ENV: TOKEN}}}
    }
    with served_app(config_path, serving=serving, ingress_options=ingress_options, app_name=APP_NAME) as app:
        items = pd.read_parquet(layout.catalog_dir() / ITEMS_FILE)
        histories = pd.read_parquet(layout.user_history_path).sort_values("event_timestamp")
        yield ServedChain(
            config,
            config_path,
            app.url,
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

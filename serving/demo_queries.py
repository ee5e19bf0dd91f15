"""A handful of real HTTP queries against the running endpoint, shown with titles, clusters and reasoning.

Requests are chosen from the pipeline's own outputs: users with the longest stored history, each with a
context item from the popular corpus that has a ``serendipitous_cluster`` (the MLLM's batch output).
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any

import pandas as pd

from serendipity.config import PipelineConfig
from serendipity.layout import WorkLayout
from serendipity.schema import ITEMS_FILE, RECENT_ITEMS_FEATURE, SERENDIPITOUS_CLUSTER_FEATURE, level_column
from serendipity.tree import ClusterTree


@dataclass(frozen=True)
class DemoQuery:
    request: dict[str, Any]
    response: dict[str, Any]


def demo_requests(config: PipelineConfig, count: int = 5, k: int = 5) -> list[dict[str, Any]]:
    layout = WorkLayout.of(config)
    histories = pd.read_parquet(layout.user_history_path, columns=["user_id", RECENT_ITEMS_FEATURE])
    lengths = histories.groupby("user_id")[RECENT_ITEMS_FEATURE].last().map(len)
    users = lengths.sort_values(ascending=False, kind="stable").index[:count].tolist()
    inferred = pd.read_parquet(layout.serendipity_path, columns=["item_id", SERENDIPITOUS_CLUSTER_FEATURE])
    contexts = inferred.dropna().sort_values("item_id")["item_id"].tolist()
    if not users or not contexts:
        raise RuntimeError(f"no users in {layout.user_history_path} or no items in {layout.serendipity_path}")
    stride = max(1, len(contexts) // count)
    return [
        {"user_id": int(user), "context_item_id": int(contexts[(i * stride) % len(contexts)]), "k": k}
        for i, user in enumerate(users)
    ]


def post(url: str, body: dict[str, Any], token: str | None = None, timeout_s: float = 60) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        f"{url}/recommend", data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read())


def run_queries(
    config: PipelineConfig, url: str, count: int = 5, k: int = 5, token: str | None = None
) -> list[DemoQuery]:
    return [DemoQuery(body, post(url, body, token)) for body in demo_requests(config, count, k)]


def describe(config: PipelineConfig, queries: list[DemoQuery]) -> str:
    """Plain-text rendering: the context item, the cluster the MLLM chose and why, the items returned."""
    layout = WorkLayout.of(config)
    catalog = pd.read_parquet(layout.catalog_dir() / ITEMS_FILE).set_index("item_id")
    tree = ClusterTree.load(layout.catalog_dir())
    own_level = level_column(config.mining.level)

    def item_line(item_id: int) -> str:
        if item_id not in catalog.index:
            return f"item {item_id}"
        row = catalog.loc[item_id]
        cluster = int(row[own_level])
        return f"item {item_id} {str(row.get('title', ''))!r} [{tree.description(cluster)}]"

    lines = []
    for query in queries:
        body, answer = query.request, query.response
        lines.append(f"user {body['user_id']} watching {item_line(body['context_item_id'])}")
        cluster = answer.get("cluster")
        chosen = f"{cluster['id']} {cluster['description']!r}" if cluster else "none"
        lines.append(
            f"  source={answer['source']} degraded={answer['degraded']} serendipitous cluster={chosen}"
        )
        if answer.get("reasoning"):
            lines.append(f"  reasoning: {answer['reasoning']}")
        lines.extend(
            f"  -> {item_line(int(item['item_id']))} score={item['score']:.3f}" for item in answer["items"]
        )
    return "\n".join(lines)

"""recommend() on the real chain's output: mined test world -> user_history (Spark) -> tiny MLLM batch
inference (Ray Data) -> Feast apply + materialise -> retriever (Ray Train job) -> Recommender."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from serendipity.config import PipelineConfig, load_config
from serendipity.layout import WorkLayout
from serendipity.retrieval.holdout_figures import RetrieverMetrics
from serendipity.retrieval.recommend import Recommender
from serendipity.schema import ITEMS_FILE, level_column

pytestmark = pytest.mark.slow
UNKNOWN_USER = 10**9


@dataclass(frozen=True)
class Chain:
    config: PipelineConfig
    config_path: Path
    recommender: Recommender
    serendipity: pd.DataFrame  # item_id -> serendipitous_cluster, from the inference job
    item_cluster: dict[int, int]  # item_id -> level-L cluster, from the catalog
    history: dict[int, list[int]]  # user_id -> latest recent_item_ids snapshot, newest first


@pytest.fixture(scope="module")
def chain(retrieval_chain: Path) -> Chain:
    config_path = retrieval_chain
    config = load_config(config_path)
    layout = WorkLayout.of(config)
    items = pd.read_parquet(layout.catalog_dir() / ITEMS_FILE)
    histories = pd.read_parquet(layout.user_history_path).sort_values("event_timestamp")
    return Chain(
        config,
        config_path,
        Recommender.load(config),
        pd.read_parquet(layout.serendipity_path),
        dict(zip(items["item_id"], items[level_column(config.mining.level)], strict=True)),
        {
            int(u): [int(i) for i in r]
            for u, r in histories.groupby("user_id")["recent_item_ids"].last().items()
        },
    )


def _featured(chain: Chain, count: int) -> list[tuple[int, int, int]]:
    """(user with history, context item with a serendipity feature, that feature's cluster)."""
    users = sorted(chain.history)[:count]
    rows = chain.serendipity.sort_values("item_id").head(count)
    return list(
        zip(users, rows["item_id"].astype(int), rows["serendipitous_cluster"].astype(int), strict=True)
    )


def test_the_job_reports_holdout_metrics_next_to_popularity(chain: Chain) -> None:
    metrics = RetrieverMetrics.read(WorkLayout.of(chain.config).retriever_metrics_path)
    assert metrics.k == chain.config.retrieval.eval_k
    assert metrics.sasrec.users == metrics.popularity.users > 10
    for figures in (metrics.sasrec, metrics.popularity):
        assert 0.0 <= figures.ndcg <= figures.hit_rate <= 1.0
    assert metrics.beats_popularity, metrics  # on the world's holdout, with epochs=20


def test_items_come_from_the_features_cluster_and_exclude_seen_items(chain: Chain) -> None:
    checked = 0
    for user, item, cluster in _featured(chain, 8):
        in_cluster = [i for i, c in chain.item_cluster.items() if c == cluster]
        extra_seen = in_cluster[:3]
        result = chain.recommender.recommend(user, item, 5, history=extra_seen)
        assert result.source == "serendipity" and not result.degraded
        assert result.cluster_id == cluster
        description = chain.serendipity.set_index("item_id").loc[item, "serendipitous_description"]
        assert result.cluster_description == description
        reasoning = chain.serendipity.set_index("item_id").loc[item, "reasoning"]
        assert result.reasoning == (reasoning or None)  # the MLLM's chain of thought, served by Feast
        assert result.items, (user, item, cluster)
        ids = [r.item_id for r in result.items]
        assert all(chain.item_cluster[i] == cluster for i in ids)
        assert all(r.cluster_id == cluster for r in result.items)
        assert not set(ids) & {item, *extra_seen, *chain.history[user]}
        assert len(ids) == len(set(ids)) and [r.score for r in result.items] == sorted(
            (r.score for r in result.items), reverse=True
        )
        checked += 1
    assert checked == 8


def test_no_feature_for_the_context_item_falls_back_to_unrestricted_results(chain: Chain) -> None:
    uncovered = sorted(set(chain.item_cluster) - set(chain.serendipity["item_id"]))
    assert uncovered, "every catalog item has a serendipity feature: no item outside the corpus"
    user = sorted(chain.history)[0]
    result = chain.recommender.recommend(user, uncovered[0], 20)
    assert result.source == "fallback" and not result.degraded and result.cluster_id is None
    assert len(result.items) == 20
    assert len({r.cluster_id for r in result.items}) > 1  # not restricted to one cluster
    assert uncovered[0] not in {r.item_id for r in result.items}


def test_unknown_user_gets_neighbours_of_the_context_item(chain: Chain) -> None:
    _, item, _ = _featured(chain, 1)[0]
    result = chain.recommender.recommend(UNKNOWN_USER, item, 5)
    assert result.source == "neighbours" and result.cluster_id is None and not result.degraded
    recommender = chain.recommender
    vector = recommender.model.item_vectors().detach().numpy()[recommender.vocabulary.indices([item])[0] - 1]
    expected, _ = recommender.index.search(vector, 6)
    assert [r.item_id for r in result.items] == [i for i in expected.tolist() if i != item][:5]
    with_history = recommender.recommend(
        UNKNOWN_USER, item, 5, history=chain.history[sorted(chain.history)[0]]
    )
    assert with_history.source == "serendipity"  # the history argument makes the user known


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_store_degrades_to_the_fallback(chain: Chain, tmp_path: Path, caplog) -> None:
    redis_yaml = tmp_path / "feature_store.yaml"
    redis_yaml.write_text(
        yaml.safe_dump(
            {
                "project": "serendipity",
                "provider": "local",
                "registry": "data/registry.db",
                "offline_store": {"type": "file"},
                "online_store": {"type": "redis", "connection_string": f"127.0.0.1:{_closed_port()}"},
                "entity_key_serialization_version": 3,
            }
        )
    )
    user, item, _ = _featured(chain, 1)[0]
    for yaml_path in (str(redis_yaml), str(tmp_path / "missing.yaml")):
        with caplog.at_level(logging.WARNING, logger="serendipity.retrieval.recommend"):
            result = Recommender.load(chain.config, yaml_path).recommend(user, item, 5)
        assert result.source == "fallback" and result.degraded and result.cluster_id is None
        assert len(result.items) == 5 and item not in {r.item_id for r in result.items}
        assert "serving degraded" in caplog.text or "serving the fallback" in caplog.text
        caplog.clear()


def test_k_is_bounded_by_max_k(chain: Chain) -> None:
    user, item, _ = _featured(chain, 1)[0]
    for k in (0, chain.config.serving.max_k + 1):
        with pytest.raises(ValueError, match="max_k"):
            chain.recommender.recommend(user, item, k)


def test_a_reloaded_recommender_gives_the_same_answers(chain: Chain) -> None:
    """The saved retriever (model, vocabulary and index) reloads to the same answers."""
    again = Recommender.load(chain.config)
    user, item, _ = _featured(chain, 1)[0]
    first = chain.recommender.recommend(user, item, 5)
    second = again.recommend(user, item, 5)
    assert [r.item_id for r in first.items] == [r.item_id for r in second.items]
    np.testing.assert_allclose([r.score for r in first.items], [r.score for r in second.items], rtol=1e-5)

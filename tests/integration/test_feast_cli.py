"""Feast's own commands make a servable store, and historical data keeps its personalisation.

The real ``feast`` CLI runs on the Feast repository the library writes in a fresh copy of the serving
chain's work dir (``<work_dir>/feast``); the recommender is then loaded in-process as a Serve replica
loads it, checked as its store monitor checks it, and asked as /recommend asks it.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from feast import FeatureStore
from feast_helpers import copy_serving_work, newest_snapshot_user, run_feast, shift_sources

from features.definitions import apply_definitions, build_definitions, warn_stale_sources
from serendipity.config import load_config
from serendipity.feature_store import ServingFeatures
from serendipity.layout import WorkLayout
from serendipity.retrieval.deadline import DeadlineReads
from serendipity.schema import ITEM_META_VIEW, ITEM_SERENDIPITY_VIEW, USER_HISTORY_VIEW
from serving.deployments import LoadedRecommender, answer_all, load_recommender, readiness_of
from serving.settings import RecommenderUserConfig
from serving.store_monitor import check_store

VIEWS = (ITEM_SERENDIPITY_VIEW, USER_HISTORY_VIEW, ITEM_META_VIEW)
DECADES = timedelta(days=365 * 40)


def loaded_and_checked(config_path: Path) -> LoadedRecommender:
    loaded = load_recommender(RecommenderUserConfig(config_path=str(config_path)))
    check_store(loaded, DeadlineReads(30.0))
    return loaded


def ask(loaded: LoadedRecommender, user_id: int) -> dict:
    features = loaded.recommender.features
    history = features.store_state()  # the newest serendipity row is a context item the store holds
    item = next(view.probe.key["item_id"] for view in history.views if view.name == ITEM_SERENDIPITY_VIEW)
    return answer_all(loaded, [{"user_id": user_id, "context_item_id": item, "k": 4}])[0]


def test_feast_apply_and_materialize_incremental_alone_make_the_endpoint_ready(
    retrieval_chain: Path, tmp_path: Path
) -> None:
    config_path = copy_serving_work(load_config(retrieval_chain), tmp_path / "work")
    config = load_config(config_path)
    repository = ServingFeatures(config).write_feast_repository()  # what the pipeline leaves in work_dir
    run_feast(repository, "apply")
    run_feast(repository, "materialize-incremental", datetime.now(UTC).isoformat())

    loaded = loaded_and_checked(config_path)
    ready = readiness_of(loaded)
    assert ready["ready"] is True, ready
    assert ready["store"]["problems"] == [] and set(ready["store"]["materialized_until"]) == set(VIEWS)
    answer = ask(loaded, newest_snapshot_user(config))
    assert answer["degraded"] is False and answer["cold_start"] is False and answer["items"], answer

    # an emptied online store (the registry still says "loaded") is noticed from Feast's own state
    with sqlite3.connect(WorkLayout.of(config).feast_dir / "data" / "online_store.db") as online:
        for view in VIEWS:
            online.execute(f"DELETE FROM serendipity_{view}")
    assert check_store(loaded, DeadlineReads(30.0)) is False
    emptied = readiness_of(loaded)
    assert emptied["ready"] is False and emptied["store"]["emptied"] is True, emptied
    assert all("lacks the materialised rows" in problem for problem in emptied["store"]["problems"])
    assert ask(loaded, newest_snapshot_user(config))["degraded"] is True

    assert loaded.recommender.features.materialize_incremental(datetime.now(UTC)) is True  # reloaded all
    assert check_store(loaded, DeadlineReads(30.0)) is True


def test_decades_old_data_is_refused_loudly_by_feast_then_served_personalised(
    retrieval_chain: Path, tmp_path: Path
) -> None:
    defaults = {"features.history_ttl_days": 90, "features.item_meta_ttl_days": 365}
    config_path = copy_serving_work(load_config(retrieval_chain), tmp_path / "work", defaults)
    config = load_config(config_path)
    shift_sources(config, DECADES)
    warnings = warn_stale_sources(build_definitions(config))  # what `feast apply` prints
    assert len(warnings) == len(VIEWS)
    for view, warning in zip(VIEWS, warnings, strict=True):
        assert f"feature view {view!r}: its source's newest event" in warning
    features = ServingFeatures(config)
    apply_definitions(features)
    FeatureStore(repo_path=str(features.write_feast_repository())).materialize_incremental(datetime.now(UTC))
    loaded = loaded_and_checked(config_path)
    refused = readiness_of(loaded)
    assert refused["ready"] is False and refused["store"]["emptied"] is False, refused
    problems = refused["store"]["problems"]
    assert len(problems) == len(VIEWS) and all("loaded nothing" in problem for problem in problems)

    features = loaded.recommender.features
    assert len(features.staleness_warnings()) == len(VIEWS)
    features.materialize_incremental(datetime.now(UTC))  # from each view's last event - its ttl
    assert check_store(loaded, DeadlineReads(30.0)) is True
    state = readiness_of(loaded)["store"]
    clocks = [datetime.fromisoformat(at) for at in state["data_last_event"].values()]
    assert len(clocks) == len(VIEWS) and all(at < datetime.now(UTC) - DECADES for at in clocks)
    answer = ask(loaded, newest_snapshot_user(config))
    assert answer["degraded"] is False and answer["cold_start"] is False and answer["items"], answer


@pytest.mark.parametrize("shift", [timedelta(0), DECADES])
def test_online_ttl_counts_from_the_data_not_the_wall_clock(
    retrieval_chain: Path, tmp_path: Path, shift: timedelta
) -> None:
    """Same rows, same ttl: the same features whether the logs ended now or decades ago."""
    config_path = copy_serving_work(
        load_config(retrieval_chain), tmp_path / "work", {"features.history_ttl_days": 90}
    )
    config = load_config(config_path)
    shift_sources(config, shift)
    features = ServingFeatures(config)
    apply_definitions(features)
    features.materialize_incremental(datetime.now(UTC))
    user = newest_snapshot_user(config)
    online = features.online_features([0], [user])
    assert online["recent_item_ids"].notna().all()

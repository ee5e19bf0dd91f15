"""The simulated live experiment (ray_jobs/evaluate.py) on the real serving chain of the test world."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import EXPERIMENT_SETTINGS

from serendipity.config import PipelineConfig, load_config, with_overrides
from serendipity.eval.arms import ARMS
from serendipity.eval.inputs import load_pre_experiment
from serendipity.eval.simulate import assign_segments
from serendipity.eval.summary import METRIC_HELP
from serendipity.layout import IMPRESSIONS_FILE, WorkLayout
from serendipity.retrieval.recommend import Recommender
from serendipity.world import UserSimulator

pytestmark = pytest.mark.slow
USERS_PER_ARM = EXPERIMENT_SETTINGS["users_per_arm"]
SUMMARY_KEYS = {"mean", "ci_low", "ci_high", "per_seed"}


@dataclass(frozen=True)
class Run:
    config: PipelineConfig
    config_path: Path
    impressions: pd.DataFrame
    report: dict


def _outputs(config: PipelineConfig) -> tuple[pd.DataFrame, dict]:
    layout = WorkLayout.of(config)
    return pd.read_parquet(layout.experiment_dir / IMPRESSIONS_FILE), json.loads(
        layout.experiment_path.read_text()
    )


@pytest.fixture(scope="module")
def run(experiment_config: Path) -> Run:
    config = load_config(experiment_config)
    impressions, report = _outputs(config)
    return Run(config, experiment_config, impressions, report)


def test_segments_are_disjoint_and_drawn_as_assigned(run: Run) -> None:
    world_users = UserSimulator.load(run.config.dataset_dir).users.column("user_id").to_numpy()
    for seed, by_seed in run.impressions.groupby("seed"):
        expected = assign_segments(world_users, USERS_PER_ARM, int(seed))
        shown = {arm: set(group["user_id"]) for arm, group in by_seed.groupby("arm")}
        assert set(shown) == set(ARMS)
        for arm in ARMS:
            assert shown[arm] <= set(expected[arm]) and len(shown[arm]) >= USERS_PER_ARM - 1
        members = [u for users in expected.values() for u in users]
        assert len(members) == len(set(members)) == USERS_PER_ARM * len(ARMS)


def test_every_slate_excludes_seen_items_and_the_context(run: Run) -> None:
    stored = load_pre_experiment(run.config).stored_history
    checked = 0
    for (_, user), rows in run.impressions.groupby(["seed", "user_id"]):
        engaged: list[int] = []
        for _, slate in rows.sort_values(["day", "session", "position"]).groupby(
            ["day", "session"], sort=True
        ):
            seen = {*stored.get(int(user), []), *engaged, int(slate["context_item_id"].iloc[0])}
            items = slate["item_id"].astype(int).tolist()
            assert not seen & set(items), (slate["arm"].iloc[0], user, seen & set(items))
            assert len(items) == len(set(items)) <= run.config.eval.slate_size
            engaged += slate.loc[slate["positive"], "item_id"].astype(int).tolist()
            checked += 1
    assert checked > 3 * 2 * USERS_PER_ARM  # seeds x sessions x users; empty slates leave no rows


def test_mllm_slates_lie_in_the_feast_features_cluster(run: Run) -> None:
    features = pd.read_parquet(WorkLayout.of(run.config).serendipity_path).set_index("item_id")
    mllm = run.impressions[run.impressions["arm"] == "mllm"]
    nominated = mllm[mllm["source"] == "serendipity"]
    assert len(nominated) > 0, mllm["source"].value_counts()
    expected = features.loc[nominated["context_item_id"], "serendipitous_cluster"].to_numpy()
    assert (nominated["cluster_id"].to_numpy() == expected).all()
    assert (nominated["nominated_cluster"].to_numpy() == expected).all()
    others = run.impressions[run.impressions["arm"] != "mllm"]
    assert set(others["source"]) <= {"exploitation", "exploration", "bandit"}
    assert others.loc[others["arm"] == "bandit", "nominated_cluster"].notna().all()


def test_recommend_many_equals_recommend_one_by_one(run: Run) -> None:
    recommender = Recommender.load(run.config)
    featured = pd.read_parquet(WorkLayout.of(run.config).serendipity_path)["item_id"].astype(int).tolist()
    uncovered = sorted(set(recommender.vocabulary.item_ids.tolist()) - set(featured))
    users = sorted(load_pre_experiment(run.config).stored_history)[:4]
    requests = [
        (users[0], featured[0], 5, None),
        (users[1], featured[1], 3, [featured[2]]),
        (users[2], uncovered[0], 7, None),
        (10**9, featured[3], 4, None),  # unknown user: neighbours
        (10**9, 10**9, 2, None),  # unknown user and item: popular
        (users[3], featured[0], 5, [uncovered[1], uncovered[2]]),
    ]
    batched = recommender.recommend_many(requests)
    singles = [recommender.recommend(*request) for request in requests]
    assert {answer.source for answer in batched} == {"serendipity", "fallback", "neighbours"}
    for many, one in zip(batched, singles, strict=True):
        assert [i.item_id for i in many.items] == [i.item_id for i in one.items]
        np.testing.assert_allclose(
            [i.score for i in many.items], [i.score for i in one.items], rtol=1e-4, atol=1e-5
        )
        assert (many.source, many.cluster_id, many.cluster_description, many.reasoning, many.degraded) == (
            one.source,
            one.cluster_id,
            one.cluster_description,
            one.reasoning,
            one.degraded,
        )
    with pytest.raises(ValueError, match="request 1: k must be"):
        recommender.recommend_many([requests[0], (users[0], featured[0], 0, None)])


def test_experiment_json_matches_the_schema(run: Run) -> None:
    report = run.report
    assert report["reference_arm"] == "exploitation" and report["arms"] == list(ARMS)
    assert (report["seeds"], report["days"], report["users_per_arm"]) == ([0, 1, 2], 1, USERS_PER_ARM)
    assert report["slate_size"] == run.config.eval.slate_size
    assert set(report["metrics"]) == set(METRIC_HELP) == set(report["metric_help"])
    for name, by_arm in report["metrics"].items():
        assert set(by_arm) == set(ARMS), name
        for arm, summary in by_arm.items():
            assert set(summary) == SUMMARY_KEYS and len(summary["per_seed"]) == 3, (name, arm)
            if summary["ci_low"] is not None:
                assert summary["ci_low"] <= summary["mean"] <= summary["ci_high"], (name, arm)
    for name in ("novelty_gain_pct", "positive_feedback_change_pct"):
        assert report["metrics"][name]["exploitation"]["per_seed"] == [0.0, 0.0, 0.0]
    for name in ("positive_feedback_ratio", "coverage", "cluster_novelty", "novel_impression_ratio"):
        for summary in report["metrics"][name].values():
            assert all(0.0 <= value <= 1.0 for value in summary["per_seed"]), name
    buckets = report["richness_buckets"]
    assert [b["bucket"] for b in buckets] == list(range(run.config.eval.richness_buckets))
    assert all(b["richness_low"] <= b["richness_high"] for b in buckets)
    for bucket in buckets:
        for name in ("mllm_positive_ratio", "other_positive_ratio", "relative_gain_pct"):
            assert set(bucket[name]) == SUMMARY_KEYS
    positive = run.impressions.groupby("arm")["positive"].mean()
    means = {arm: v["mean"] for arm, v in report["metrics"]["positive_feedback_ratio"].items()}
    per_seed_means = run.impressions.groupby(["arm", "seed"])["positive"].mean().groupby("arm").mean()
    assert means == pytest.approx(per_seed_means.to_dict()) and set(positive.index) == set(ARMS)
    print("smoke figures (mean over seeds):")
    for name in ("positive_feedback_ratio", "novel_impression_ratio", "cluster_novelty", "serendipity"):
        print(" ", name, {arm: round(v["mean"], 3) for arm, v in report["metrics"][name].items()})


def test_a_rerun_on_one_shard_replaces_the_outputs_with_the_same_results(run: Run) -> None:
    """Same seeds, one Ray actor instead of two: every draw is keyed by (seed, day, session, user) and the
    bandit's posterior is updated in (user, session) order, so the outputs are identical and replaced."""
    from ray_jobs import evaluate

    evaluate.run(with_overrides(run.config, {"eval.num_shards": 1}))
    impressions, report = _outputs(run.config)
    assert len(impressions) == len(run.impressions)
    assert not impressions.duplicated(["seed", "day", "session", "arm", "user_id", "position"]).any()
    pd.testing.assert_frame_equal(impressions, run.impressions)
    assert report["metrics"] == run.report["metrics"]
    assert sorted(p.name for p in WorkLayout.of(run.config).experiment_dir.iterdir()) == [
        "experiment.json",
        "impressions.parquet",
    ]

"""Experiment metrics on tiny hand-checkable impression frames, the bandit's posterior, the segments."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from serendipity.eval import metrics
from serendipity.eval.bandit import NO_CLUSTER, FeatureMap, NeuralLinearBandit
from serendipity.eval.simulate import assign_segments
from serendipity.eval.summary import summarise


def _impressions(rows: list[tuple]) -> pd.DataFrame:
    """rows: (seed, day, session, arm, user, item, cluster, positive, source)."""
    frame = pd.DataFrame(
        rows,
        columns=["seed", "day", "session", "arm", "user_id", "item_id", "cluster_id", "positive", "source"],
    )
    return frame.assign(
        context_item_id=100, position=frame.groupby(metrics.SLATE_KEYS).cumcount(), satisfaction=0.5
    )


@pytest.fixture
def two_arms() -> pd.DataFrame:
    # seed 0: exploitation shows 1,2,3,4; mllm shows 3,5,6,7 (items 1,2,4 and 5,6,7 are unique to their arm)
    # seed 1: exploitation shows 1,1; mllm shows 1,8
    return _impressions(
        [
            (0, 0, 0, "exploitation", 10, 1, 1, True, "exploitation"),
            (0, 0, 0, "exploitation", 10, 2, 1, False, "exploitation"),
            (0, 0, 0, "exploitation", 10, 3, 2, False, "exploitation"),
            (0, 0, 0, "exploitation", 10, 4, 2, False, "exploitation"),
            (0, 0, 0, "mllm", 20, 3, 2, True, "serendipity"),
            (0, 0, 0, "mllm", 20, 5, 3, True, "serendipity"),
            (0, 1, 0, "mllm", 20, 6, 3, False, "fallback"),
            (0, 1, 0, "mllm", 20, 7, 3, True, "fallback"),
            (1, 0, 0, "exploitation", 11, 1, 1, True, "exploitation"),
            (1, 0, 1, "exploitation", 11, 1, 1, True, "exploitation"),
            (1, 0, 0, "mllm", 21, 1, 1, False, "serendipity"),
            (1, 0, 0, "mllm", 21, 8, 4, True, "serendipity"),
        ]
    )


def test_novel_impression_ratio_counts_items_no_other_arm_showed(two_arms: pd.DataFrame) -> None:
    ratio = metrics.novel_impression_ratio(two_arms)
    assert ratio.loc[0, "exploitation"] == pytest.approx(3 / 4)
    assert ratio.loc[0, "mllm"] == pytest.approx(3 / 4)
    assert ratio.loc[1, "exploitation"] == 0.0
    assert ratio.loc[1, "mllm"] == pytest.approx(1 / 2)


def test_percentage_change_is_zero_for_the_reference_and_undefined_over_zero(two_arms: pd.DataFrame) -> None:
    change = metrics.percentage_change(metrics.novel_impression_ratio(two_arms), "exploitation")
    assert change.loc[0, "exploitation"] == 0.0 and change.loc[0, "mllm"] == pytest.approx(0.0)
    assert math.isnan(change.loc[1, "mllm"]) and math.isnan(change.loc[1, "exploitation"])
    positive = metrics.positive_feedback_ratio(two_arms)
    assert positive.loc[0, "mllm"] == pytest.approx(3 / 4) and positive.loc[0, "exploitation"] == 0.25
    assert metrics.percentage_change(positive, "exploitation").loc[0, "mllm"] == pytest.approx(200.0)


def test_engaged_user_share_divides_by_the_segment_and_averages_over_days(two_arms: pd.DataFrame) -> None:
    share = metrics.engaged_user_share(two_arms, users_per_arm=2, days=2, share=0.5)
    # seed 0: mllm user 20 is engaged on day 0 (2 of 2 positive), not on day 1 (1 of 2) -> (1/2 + 0) / 2;
    # exploitation user 10 has 1 of 4 positive on day 0 -> never engaged
    assert share.loc[0, "mllm"] == pytest.approx(0.25)
    assert share.loc[0, "exploitation"] == 0.0
    assert share.loc[1, "exploitation"] == pytest.approx(0.25)  # user 11: 2 of 2 on day 0, none on day 1
    lenient = metrics.engaged_user_share(two_arms, users_per_arm=2, days=2, share=0.2)
    assert lenient.loc[0, "mllm"] == pytest.approx(0.5) and lenient.loc[0, "exploitation"] == pytest.approx(
        0.25
    )


def test_unique_engaged_pairs_counts_each_user_item_once(two_arms: pd.DataFrame) -> None:
    pairs = metrics.unique_engaged_pairs(two_arms)
    assert pairs.loc[0, "mllm"] == 3 and pairs.loc[0, "exploitation"] == 1
    assert pairs.loc[1, "exploitation"] == 1 and pairs.loc[1, "mllm"] == 1


def test_cluster_novelty_uses_the_pre_experiment_clusters(two_arms: pd.DataFrame) -> None:
    novelty = metrics.cluster_novelty(two_arms, {10: {1}, 20: {3}, 11: set()})
    assert novelty.loc[0, "exploitation"] == pytest.approx(2 / 4)
    assert novelty.loc[0, "mllm"] == pytest.approx(1 / 4)
    assert novelty.loc[1, "mllm"] == 1.0  # user 21 has no history at all


def test_novelty_is_mean_self_information_of_smoothed_popularity() -> None:
    counts = pd.Series({1: 3, 2: 0})  # smoothed shares 4/5 and 1/5
    frame = _impressions([(0, 0, 0, "a", 1, 1, 1, True, "a"), (0, 0, 0, "a", 1, 2, 1, True, "a")])
    expected = (-math.log2(4 / 5) - math.log2(1 / 5)) / 2
    assert metrics.novelty(frame, counts).loc[0, "a"] == pytest.approx(expected)
    assert metrics.popularity_primitive(counts, 1) == {1}


def test_serendipity_needs_both_unexpected_and_positive(two_arms: pd.DataFrame) -> None:
    value = metrics.serendipity(two_arms, expected_items={3, 5})
    assert value.loc[0, "mllm"] == pytest.approx(1 / 4)  # only item 7 is positive and unexpected
    assert value.loc[0, "exploitation"] == pytest.approx(1 / 4)


def test_intra_list_diversity_and_coverage(two_arms: pd.DataFrame) -> None:
    basis = {
        1: [1.0, 0.0],
        2: [0.0, 1.0],
        3: [1.0, 0.0],
        4: [2.0, 0.0],
        5: [0.0, 3.0],
        6: [1, 1],
        7: [1, 1],
        8: [1, 0],
    }

    def vectors(items: np.ndarray) -> np.ndarray:
        return np.array([basis[int(i)] for i in items], dtype=float)

    diversity = metrics.intra_list_diversity(two_arms, vectors)
    # exploitation slate 1,2,3,4: pairs (1,2)=1 (1,3)=0 (1,4)=0 (2,3)=1 (2,4)=1 (3,4)=0 -> 3/6
    assert diversity.loc[0, "exploitation"] == pytest.approx(0.5)
    # mllm: slate {3,5} -> 1; slate {6,7} -> 0; mean 0.5
    assert diversity.loc[0, "mllm"] == pytest.approx(0.5)
    assert math.isnan(diversity.loc[1, "exploitation"])  # two one-item slates
    covered = metrics.coverage(two_arms, catalogue_size=10)
    assert covered.loc[0, "mllm"] == pytest.approx(0.4) and covered.loc[1, "exploitation"] == pytest.approx(
        0.1
    )


def test_richness_buckets_compare_nominated_mllm_items_with_the_other_arms(two_arms: pd.DataFrame) -> None:
    edges = metrics.richness_edges(np.array([0.0, 0.25, 0.5, 0.75, 1.0]), 2)
    assert edges.tolist() == [0.0, 0.5, 1.0]
    richness = np.where(two_arms["user_id"].isin([10, 20]), 0.2, 0.9)  # seed 0 low, seed 1 high bucket
    ratios = metrics.richness_bucket_ratios(two_arms, richness, edges, "mllm")
    assert ratios["mllm_positive_ratio"].loc[0, 0] == 1.0  # items 3, 5 (fallback rows left out)
    assert ratios["other_positive_ratio"].loc[0, 0] == 0.25
    assert ratios["relative_gain_pct"].loc[0, 0] == pytest.approx(300.0)
    assert ratios["mllm_positive_ratio"].loc[1, 1] == 0.5
    assert math.isnan(ratios["mllm_positive_ratio"].loc[0, 1])


def test_summarise_gives_a_student_t_interval_and_nulls_when_undefined() -> None:
    result = summarise([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)
    assert result.mean == 2.0
    assert result.ci_low == pytest.approx(2 - half) and result.ci_high == pytest.approx(2 + half)
    single = summarise([float("nan"), 5.0])
    assert single.to_json() == {"mean": 5.0, "ci_low": None, "ci_high": None, "per_seed": [None, 5.0]}


def test_bandit_posterior_is_the_ridge_solution() -> None:
    bandit = NeuralLinearBandit([7, 9], FeatureMap(1, 1, seed=0), prior_precision=1.0, noise_variance=0.5)
    x = np.array([[1.0, 0.0]] * 3)
    bandit.update([7, 7, 7], x, [1.0, 1.0, 0.0])
    mean, covariance = bandit.posterior(7)
    assert mean == pytest.approx([2 / 4, 0.0])
    assert np.diag(covariance) == pytest.approx([0.5 / 4, 0.5])
    untouched_mean, _ = bandit.posterior(9)
    assert untouched_mean == pytest.approx([0.0, 0.0])
    with pytest.raises(KeyError, match="cluster 8"):
        bandit.update([8], x[:1], [1.0])


def test_thompson_sampling_follows_the_evidence_and_the_allowed_mask() -> None:
    bandit = NeuralLinearBandit([1, 2, 3], FeatureMap(2, 3, seed=1), noise_variance=0.01)
    features = bandit.features(np.ones((1, 2)), np.ones((1, 2)))
    bandit.update([2] * 50, np.repeat(features, 50, axis=0), [1.0] * 50)
    bandit.update([1] * 50, np.repeat(features, 50, axis=0), [0.0] * 50)
    rng = np.random.default_rng(0)
    many = np.repeat(features, 200, axis=0)
    chosen = bandit.choose(many, np.ones((200, 3), dtype=bool), rng)
    assert (chosen == 2).mean() > 0.9
    mask = bandit.allowed_mask([{2}] * 200)
    assert not (bandit.choose(many, mask, rng) == 2).any()
    nothing = bandit.choose(features, np.zeros((1, 3), dtype=bool), rng)
    assert nothing.tolist() == [NO_CLUSTER]
    keyed = bandit.choose(many[:5], np.ones((5, 3), dtype=bool), [np.random.default_rng(k) for k in range(5)])
    alone = [
        bandit.choose(features, np.ones((1, 3), dtype=bool), [np.random.default_rng(k)])[0] for k in range(5)
    ]
    assert keyed.tolist() == alone  # a request's draw does not depend on its batch


def test_segments_are_disjoint_equal_and_seeded() -> None:
    users = np.arange(100, 140)
    segments = assign_segments(users, 8, seed=3)
    members = [u for group in segments.values() for u in group]
    assert len(members) == len(set(members)) == 32 and all(len(g) == 8 for g in segments.values())
    assert segments == assign_segments(users, 8, seed=3) != assign_segments(users, 8, seed=4)
    with pytest.raises(ValueError, match="needs 44 users"):
        assign_segments(users, 11, seed=0)

"""Per-seed metrics of the simulated experiment, each a (seed x arm) frame computed from the impressions.

The impressions frame has ``serendipity.eval.simulate.IMPRESSION_COLUMNS``; a slate is one
(seed, day, session, arm, user_id). Beyond the paper's live metrics (novel impressions, positive
feedback, engagement; Figures 6 and 7) come the usual beyond-accuracy definitions, following
Kaminskas & Bridge, "Diversity, Serendipity, Novelty, and Coverage: A Survey and Empirical Analysis of
Beyond-Accuracy Objectives in Recommender Systems" (ACM TiiS 2016), Castells, Hurley & Vargas,
"Novelty and Diversity in Recommender Systems" (Recommender Systems Handbook, 2015) and Ge, Delgado-
Battenfeld & Jannach, "Beyond accuracy: evaluating recommender systems by coverage and serendipity"
(RecSys 2010).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

import numpy as np
import pandas as pd

SLATE_KEYS = ["seed", "day", "session", "arm", "user_id"]
SERENDIPITY_SOURCE = "serendipity"


def _per_seed(values: pd.Series, arms: Collection[str] | None = None) -> pd.DataFrame:
    """A (seed, arm)-indexed series as a seed x arm frame."""
    frame = values.unstack("arm")
    if arms is not None:
        frame = frame.reindex(columns=list(arms))
    return frame.astype(float)


def novel_impression_ratio(impressions: pd.DataFrame) -> pd.DataFrame:
    """Share of an arm's impressions whose item no other arm recommended in the same seed."""
    ratios = {}
    for seed, run in impressions.groupby("seed"):
        items_by_arm = {arm: set(group["item_id"]) for arm, group in run.groupby("arm")}
        for arm, group in run.groupby("arm"):
            others = set().union(*(items for other, items in items_by_arm.items() if other != arm))
            ratios[(seed, arm)] = float((~group["item_id"].isin(others)).mean())
    return _per_seed(pd.Series(ratios).rename_axis(["seed", "arm"]))


def percentage_change(per_seed: pd.DataFrame, reference: str) -> pd.DataFrame:
    """100 * (value / reference arm's value - 1) per seed; the reference arm is 0, undefined is NaN."""
    base = per_seed[reference].where(per_seed[reference] != 0)
    change = (per_seed.div(base, axis=0) - 1.0) * 100.0
    change[reference] = change[reference].where(base.isna(), 0.0)
    return change


def positive_feedback_ratio(impressions: pd.DataFrame) -> pd.DataFrame:
    """Share of impressions with positive feedback (satisfaction above the engagement threshold)."""
    return _per_seed(impressions.groupby(["seed", "arm"])["positive"].mean())


def engaged_user_share(
    impressions: pd.DataFrame, users_per_arm: int, days: int, share: float
) -> pd.DataFrame:
    """Share of an arm's users whose day is engaged (more than ``share`` of that day's impressions got
    positive feedback), averaged over days.

    The denominator is the segment size: a user with no impressions that day counts as not engaged.
    """
    positive_share = impressions.groupby(["seed", "arm", "day", "user_id"])["positive"].mean()
    engaged_users = (positive_share > share).groupby(["seed", "arm", "day"]).sum()
    index = pd.MultiIndex.from_product(
        [sorted(impressions["seed"].unique()), sorted(impressions["arm"].unique()), range(days)],
        names=["seed", "arm", "day"],
    )
    share = engaged_users.reindex(index, fill_value=0) / users_per_arm
    return _per_seed(share.groupby(["seed", "arm"]).mean())


def unique_engaged_pairs(impressions: pd.DataFrame) -> pd.DataFrame:
    """Distinct (user, item) pairs with positive feedback."""
    positives = impressions[impressions["positive"]].drop_duplicates(["seed", "arm", "user_id", "item_id"])
    counts = positives.groupby(["seed", "arm"]).size()
    index = pd.MultiIndex.from_product(
        [sorted(impressions["seed"].unique()), sorted(impressions["arm"].unique())], names=["seed", "arm"]
    )
    return _per_seed(counts.reindex(index, fill_value=0))


def cluster_novelty(
    impressions: pd.DataFrame, engaged_clusters: Mapping[int, Collection[int]]
) -> pd.DataFrame:
    """Share of impressions in a level-L cluster the user had not engaged with before the experiment."""
    new = [
        cluster not in engaged_clusters.get(int(user), ())
        for user, cluster in zip(impressions["user_id"], impressions["cluster_id"], strict=True)
    ]
    return _per_seed(impressions.assign(new=new).groupby(["seed", "arm"])["new"].mean())


def self_information(item_impressions: pd.Series) -> pd.Series:
    """-log2 p(i), p(i) the item's add-one-smoothed share of the logged impressions (Castells et al.)."""
    share = (item_impressions + 1.0) / (item_impressions.sum() + len(item_impressions))
    return -np.log2(share)


def novelty(impressions: pd.DataFrame, item_impressions: pd.Series) -> pd.DataFrame:
    """Mean self-information of the recommended items (Kaminskas & Bridge 2016, eq. "novelty")."""
    information = self_information(item_impressions)
    unseen = float(-np.log2(1.0 / (item_impressions.sum() + len(item_impressions))))
    values = impressions["item_id"].map(information).fillna(unseen)
    return _per_seed(impressions.assign(information=values).groupby(["seed", "arm"])["information"].mean())


def popularity_primitive(item_impressions: pd.Series, size: int) -> set[int]:
    """The primitive recommender of Ge et al. (2010): the ``size`` most shown items of the logs."""
    ranked = item_impressions.sort_values(ascending=False, kind="stable")
    return {int(i) for i in ranked.index[:size]}


def serendipity(impressions: pd.DataFrame, expected_items: Collection[int]) -> pd.DataFrame:
    """Share of impressions both unexpected (not in the primitive recommender's list) and relevant
    (positive feedback) (Ge et al. 2010; Kaminskas & Bridge 2016)."""
    surprising = impressions["positive"] & ~impressions["item_id"].isin(list(expected_items))
    return _per_seed(impressions.assign(surprising=surprising).groupby(["seed", "arm"])["surprising"].mean())


def _slate_diversity(vectors: np.ndarray) -> float:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms > 0, norms, 1.0)
    similarity = unit @ unit.T
    upper = np.triu_indices(len(vectors), k=1)
    return float(np.mean(1.0 - similarity[upper]))


def intra_list_diversity(
    impressions: pd.DataFrame, item_vectors: Callable[[np.ndarray], np.ndarray]
) -> pd.DataFrame:
    """Mean over slates of the mean pairwise 1 - cosine similarity of the items' SASRec vectors
    (Ziegler et al. 2005; Kaminskas & Bridge 2016). Slates of fewer than two items are left out."""
    values = {}
    for (seed, arm), run in impressions.groupby(["seed", "arm"]):
        slates = [g["item_id"].to_numpy(np.int64) for _, g in run.groupby(SLATE_KEYS) if len(g) >= 2]
        diversities = [_slate_diversity(item_vectors(items)) for items in slates]
        values[(seed, arm)] = float(np.mean(diversities)) if diversities else np.nan
    return _per_seed(pd.Series(values, dtype=float).rename_axis(["seed", "arm"]))


def coverage(impressions: pd.DataFrame, catalogue_size: int) -> pd.DataFrame:
    """Catalogue coverage: distinct recommended items / catalogue size (Ge et al. 2010)."""
    return _per_seed(impressions.groupby(["seed", "arm"])["item_id"].nunique() / catalogue_size)


def richness_edges(richness: np.ndarray, buckets: int) -> np.ndarray:
    """Quantile edges (buckets + 1) of the catalogue's visual richness."""
    return np.quantile(np.asarray(richness, dtype=float), np.linspace(0.0, 1.0, buckets + 1))


def richness_bucket_ratios(
    impressions: pd.DataFrame, context_richness: np.ndarray, edges: np.ndarray, mllm_arm: str
) -> dict[str, pd.DataFrame]:
    """Per richness bucket of the context item (seed x bucket frames): positive ratio of the mllm arm's
    MLLM-nominated impressions (source "serendipity"), of the other arms' impressions, and the
    relative gain in percent (Figure 8)."""
    bucket = np.clip(np.searchsorted(edges[1:-1], context_richness, side="right"), 0, len(edges) - 2)
    frame = impressions.assign(bucket=bucket)
    nominated = frame[(frame["arm"] == mllm_arm) & (frame["source"] == SERENDIPITY_SOURCE)]
    others = frame[frame["arm"] != mllm_arm]
    index = pd.MultiIndex.from_product(
        [sorted(frame["seed"].unique()), range(len(edges) - 1)], names=["seed", "bucket"]
    )
    mllm = nominated.groupby(["seed", "bucket"])["positive"].mean().reindex(index).unstack("bucket")
    other = others.groupby(["seed", "bucket"])["positive"].mean().reindex(index).unstack("bucket")
    gain = (mllm / other.where(other != 0) - 1.0) * 100.0
    return {"mllm_positive_ratio": mllm, "other_positive_ratio": other, "relative_gain_pct": gain}

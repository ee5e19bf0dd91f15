"""The Spark mining chain re-implemented in pandas, from the spec alone (no Spark code reused)."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd
from scipy.stats import norm

Z95 = float(norm.ppf(0.975))


def consecutive_pairs(
    interactions: pd.DataFrame, items: pd.DataFrame, level: int, gap_minutes: float
) -> pd.DataFrame:
    logs = interactions[["user_id", "item_id", "ts", "satisfaction"]].sort_values(
        ["user_id", "ts", "item_id", "satisfaction"], kind="mergesort"
    )
    following = logs.groupby("user_id", sort=False).shift(-1)
    frame = pd.DataFrame(
        {
            "user_id": logs["user_id"].to_numpy(),
            "context_item_id": logs["item_id"].to_numpy(),
            "next_item_id": following["item_id"].to_numpy(),
            "satisfaction": following["satisfaction"].to_numpy(),
            "ts": following["ts"].to_numpy(),
            "context_ts": logs["ts"].to_numpy(),
        }
    )
    frame = frame[frame["next_item_id"].notna()].copy()
    frame["next_item_id"] = frame["next_item_id"].astype("int64")
    gap = pd.to_datetime(frame["ts"], utc=True) - pd.to_datetime(frame["context_ts"], utc=True)
    frame = frame[gap <= pd.Timedelta(minutes=gap_minutes)].drop(columns="context_ts")
    fine, coarse = f"c{level}", f"c{level - 1}"
    lookup = items[["item_id", fine, coarse]]
    frame = frame.merge(
        lookup.rename(
            columns={"item_id": "context_item_id", fine: "context_cluster", coarse: "context_parent_cluster"}
        ),
        on="context_item_id",
    ).merge(
        lookup.rename(
            columns={"item_id": "next_item_id", fine: "next_cluster", coarse: "next_parent_cluster"}
        ),
        on="next_item_id",
    )
    same_fine = frame["context_cluster"] == frame["next_cluster"]
    same_coarse = frame["context_parent_cluster"] == frame["next_parent_cluster"]
    frame["pair_class"] = np.select([same_fine, same_coarse], ["similar", "serendipitous"], "distant")
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame.reset_index(drop=True)


def rates(pairs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    grouped = pairs.groupby(keys)["satisfaction"]
    out = pd.DataFrame(
        {
            "count": grouped.size(),
            "mean_satisfaction": grouped.mean(),
            "std_satisfaction": grouped.std(ddof=1),
        }
    ).reset_index()
    half = Z95 * out["std_satisfaction"] / np.sqrt(out["count"])
    out["ci_low"] = out["mean_satisfaction"] - half
    out["ci_high"] = out["mean_satisfaction"] + half
    out["count"] = out["count"].astype("int64")
    return out


def aggregates(pairs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    per_cluster = rates(pairs, ["context_parent_cluster", "pair_class"])
    return rates(pairs, ["pair_class"]), per_cluster


def serendipitous(pairs: pd.DataFrame) -> pd.DataFrame:
    chosen = pairs[pairs["pair_class"] == "serendipitous"].copy()
    chosen["parent_cluster"] = chosen["context_parent_cluster"]
    columns = ["user_id", "context_item_id", "next_item_id", "context_cluster", "next_cluster"]
    return chosen[[*columns, "parent_cluster", "satisfaction", "ts"]].reset_index(drop=True)


def scores(pairs: pd.DataFrame, smoothing: float, min_support: int) -> pd.DataFrame:
    global_mean = math.fsum(pairs["satisfaction"]) / len(pairs) if len(pairs) else 0.0
    grouped = pairs.groupby(["context_item_id", "next_cluster"])["satisfaction"]
    out = pd.DataFrame({"support": grouped.size(), "total": grouped.agg(math.fsum)}).reset_index()
    out = out[out["support"] >= min_support].copy()
    out["mean_satisfaction"] = out["total"] / out["support"]
    out["score"] = (out["total"] + smoothing * global_mean) / (out["support"] + smoothing)
    out["support"] = out["support"].astype("int64")
    return out.drop(columns="total").reset_index(drop=True)


def validation_bucket(item_id: int, seed: int) -> float:
    return int(hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()[:8], 16) / 2**32


def time_cuts(pairs: pd.DataFrame, calibration: float, validation: float) -> tuple[float, float]:
    """Linear-interpolated quantiles of the pairs' times (UTC microseconds): train and calibration ends."""
    micros = pd.to_datetime(pairs["ts"], utc=True).dt.as_unit("us").astype("int64").to_numpy()
    train_share = max(0.0, 1.0 - calibration - validation)
    return float(np.quantile(micros, train_share)), float(np.quantile(micros, 1.0 - validation))


def with_split(pairs: pd.DataFrame, cuts: tuple[float, float]) -> pd.DataFrame:
    micros = pd.to_datetime(pairs["ts"], utc=True).dt.as_unit("us").astype("int64").astype(float)
    split = np.where(micros < cuts[0], "train", np.where(micros < cuts[1], "calibration", "validation"))
    return pairs.assign(split=split)


def curate(pairs: pd.DataFrame, mining) -> pd.DataFrame:
    """Training examples: the top-K context items per next cluster by s(v, c) over the training pairs;
    held-out examples: per context item of each later period, its next cluster(s) of highest s(v, c) over
    the period's pairs, at most ``max_holdout_items`` items in hash order."""
    train = pairs[pairs["split"] == "train"]
    ordered = scores(train, mining.smoothing, mining.min_support).sort_values(
        ["next_cluster", "score", "support", "context_item_id"], ascending=[True, False, False, True]
    )
    ordered["rank"] = ordered.groupby("next_cluster").cumcount() + 1
    top = ordered[ordered["rank"] <= mining.top_k_per_cluster]
    parts = [
        pd.DataFrame(
            {
                "context_item_id": top["context_item_id"],
                "target_cluster": top["next_cluster"],
                "score": top["score"],
                "rank": top["rank"].astype("int32"),
                "split": "train",
            }
        )
    ]
    for split in ("calibration", "validation"):
        period = scores(pairs[pairs["split"] == split], mining.smoothing, 1)
        best = period.groupby("context_item_id")["score"].transform("max")
        labels = period[period["score"] == best]
        chosen = sorted(
            labels["context_item_id"].unique(),
            key=lambda i: (validation_bucket(int(i), mining.split_seed), i),
        )[: mining.max_holdout_items]
        labels = labels[labels["context_item_id"].isin(chosen)]
        parts.append(
            pd.DataFrame(
                {
                    "context_item_id": labels["context_item_id"],
                    "target_cluster": labels["next_cluster"],
                    "score": labels["score"],
                    "rank": np.int32(1),
                    "split": split,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def cluster_prior(train: pd.DataFrame, clusters: pd.DataFrame, level: int, smoothing: float) -> pd.DataFrame:
    at_level = clusters[clusters["level"] == level][["cluster_id", "parent_id"]]
    siblings = at_level.merge(at_level, on="parent_id", suffixes=("_a", "_b"))
    siblings = siblings[siblings["cluster_id_a"] != siblings["cluster_id_b"]]
    siblings = siblings.rename(columns={"cluster_id_a": "context_cluster", "cluster_id_b": "next_cluster"})
    weights = train.groupby(["context_cluster", "next_cluster"])["satisfaction"].sum().rename("weight")
    prior = siblings[["context_cluster", "next_cluster"]].merge(
        weights.reset_index(), on=["context_cluster", "next_cluster"], how="left"
    )
    prior["weight"] = prior["weight"].fillna(0.0)
    grouped = prior.groupby("context_cluster")["weight"]
    prior["probability"] = (prior["weight"] + smoothing) / (
        grouped.transform("sum") + smoothing * grouped.transform("size")
    )
    return prior.reset_index(drop=True)


def item_prior(
    train: pd.DataFrame, prior: pd.DataFrame, min_transitions: int, grid: tuple[float, ...]
) -> tuple[pd.DataFrame, float]:
    """P(next | item) for items with ``min_transitions`` training transitions, shrunk toward the cluster
    prior with the beta of ``grid`` that maximises the Dirichlet-multinomial marginal likelihood."""
    from scipy.special import gammaln

    counts = train.groupby(["context_item_id", "context_cluster"]).size().rename("n").reset_index()
    warm = counts[counts["n"] >= min_transitions][["context_item_id", "context_cluster"]]
    base = prior.rename(columns={"probability": "base"})[["context_cluster", "next_cluster", "base"]]
    evidence = warm.merge(base, on="context_cluster")
    weights = train.groupby(["context_item_id", "next_cluster"])["satisfaction"].sum().rename("weight")
    evidence = evidence.merge(weights.reset_index(), on=["context_item_id", "next_cluster"], how="left")
    evidence["weight"] = evidence["weight"].fillna(0.0)
    totals = evidence.groupby("context_item_id")["weight"].transform("sum")

    def log_likelihood(beta: float) -> float:
        alpha = beta * evidence["base"]
        terms = (
            (gammaln(evidence["weight"] + alpha) - gammaln(alpha)).groupby(evidence["context_item_id"]).sum()
        )
        item_totals = evidence.groupby("context_item_id")["weight"].sum()
        return float((terms + gammaln(beta) - gammaln(beta + item_totals)).sum())

    likelihoods = [(log_likelihood(b), -b) for b in grid]
    beta = -max(likelihoods)[1] if len(evidence) else grid[-1]
    evidence["probability"] = (evidence["weight"] + beta * evidence["base"]) / (totals + beta)
    return evidence, beta


def corpus(interactions: pd.DataFrame, coverage: float) -> pd.DataFrame:
    shown = interactions
    if "impression" in interactions.columns:
        flag = interactions["impression"]
        shown = interactions[flag.isna() | (flag == True)]  # noqa: E712 - nullable boolean column
    counts = shown.groupby("item_id").size().rename("impressions").reset_index()
    counts = counts.sort_values(["impressions", "item_id"], ascending=[False, True]).reset_index(drop=True)
    total = int(counts["impressions"].sum())
    cumulative = counts["impressions"].cumsum()
    counts["cumulative_share"] = cumulative / total
    before = (cumulative - counts["impressions"]) / total
    counts["impressions"] = counts["impressions"].astype("int64")
    return counts[before < coverage].reset_index(drop=True)

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


def curate(scored: pd.DataFrame, top_k: int, validation_fraction: float, seed: int) -> pd.DataFrame:
    ordered = scored.sort_values(
        ["next_cluster", "score", "support", "context_item_id"], ascending=[True, False, False, True]
    )
    ordered["rank"] = ordered.groupby("next_cluster").cumcount() + 1
    top = ordered[ordered["rank"] <= top_k]
    out = pd.DataFrame(
        {
            "context_item_id": top["context_item_id"],
            "target_cluster": top["next_cluster"],
            "score": top["score"],
            "rank": top["rank"].astype("int32"),
        }
    )
    buckets = out["context_item_id"].map(lambda item: validation_bucket(int(item), seed))
    out["split"] = np.where(buckets < validation_fraction, "validation", "train")
    return out.reset_index(drop=True)


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

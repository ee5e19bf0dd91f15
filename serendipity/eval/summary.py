"""experiment.json: every metric per arm as mean and 95% t-interval over seeds, plus the richness buckets.

The document is an ``ExperimentSummary`` (``serendipity.eval.results``). Undefined values (e.g. a gain
over a zero reference, an interval from one seed) are JSON null.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from serendipity.config import PipelineConfig
from serendipity.eval import metrics
from serendipity.eval.arms import ARMS, EXPLOITATION, MLLM, arm_names
from serendipity.eval.inputs import PreExperiment
from serendipity.eval.results import ExperimentPaths, ExperimentSummary, RichnessBucket, Statistic
from serendipity.intervals import mean_with_t_half_width
from serendipity.io import write_parquet_atomic
from serendipity.layout import EXPERIMENT_FILE, IMPRESSIONS_FILE

METRIC_HELP = {
    "novel_impression_ratio": "share of the arm's impressions whose item no other arm recommended (per seed)",
    "novelty_gain_pct": "novel impression ratio relative to exploitation, in percent (Figure 6 x-axis)",
    "positive_feedback_ratio": "share of impressions with satisfaction above engagement.satisfaction_above",
    "positive_feedback_change_pct": "positive feedback ratio relative to exploitation, in percent (Fig. 6 y)",
    "engaged_user_share": "share of the arm's users with more than eval.engaged_day_share of a day's "
    "impressions positive, averaged over days (Figure 7)",
    "unique_engaged_pairs": "distinct (user, item) pairs with positive feedback (Figure 7)",
    "cluster_novelty": "share of impressions in a level-L cluster the user had not engaged with before",
    "novelty": "mean self-information -log2 p(item) of the logs' add-one-smoothed impression shares",
    "serendipity": "share of impressions both positive and outside the popularity primitive's top slate",
    "intra_list_diversity": "mean pairwise 1 - cosine of the SASRec item vectors within a slate",
    "coverage": "distinct recommended items / catalogue size",
}


def _number(value: Any) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


def summarise(values: Sequence[float]) -> Statistic:
    """Mean and 95% Student-t interval over the finite per-seed values."""
    per_seed = [_number(v) for v in values]
    mean, half = mean_with_t_half_width(per_seed)
    low, high = (None, None) if math.isnan(half) else (mean - half, mean + half)
    return Statistic(mean=_number(mean), ci_low=low, ci_high=high, per_seed=per_seed)


def _by_arm(per_seed: pd.DataFrame, seeds: Sequence[int], arms: Sequence[str]) -> dict[str, Statistic]:
    frame = per_seed.reindex(index=list(seeds), columns=list(arms))
    return {arm: summarise(frame[arm].tolist()) for arm in arms}


@dataclass(frozen=True)
class MetricContext:
    pre: PreExperiment
    item_vectors: Callable[[np.ndarray], np.ndarray]
    richness: Callable[[np.ndarray], np.ndarray]  # the world's visual_richness of item ids


def per_seed_metrics(
    impressions: pd.DataFrame, context: MetricContext, config: PipelineConfig
) -> dict[str, pd.DataFrame]:
    settings = config.eval
    novel = metrics.novel_impression_ratio(impressions)
    positive = metrics.positive_feedback_ratio(impressions)
    primitive = metrics.popularity_primitive(context.pre.impressions, settings.slate_size)
    return {
        "novel_impression_ratio": novel,
        "novelty_gain_pct": metrics.percentage_change(novel, EXPLOITATION),
        "positive_feedback_ratio": positive,
        "positive_feedback_change_pct": metrics.percentage_change(positive, EXPLOITATION),
        "engaged_user_share": metrics.engaged_user_share(
            impressions, settings.users_per_arm, settings.days, settings.engaged_day_share
        ),
        "unique_engaged_pairs": metrics.unique_engaged_pairs(impressions),
        "cluster_novelty": metrics.cluster_novelty(impressions, context.pre.engaged_clusters),
        "novelty": metrics.novelty(impressions, context.pre.impressions),
        "serendipity": metrics.serendipity(impressions, primitive),
        "intra_list_diversity": metrics.intra_list_diversity(impressions, context.item_vectors),
        "coverage": metrics.coverage(impressions, context.pre.catalogue_size),
    }


def richness_section(
    impressions: pd.DataFrame, context: MetricContext, config: PipelineConfig
) -> list[RichnessBucket]:
    catalogue = np.array(sorted(context.pre.item_cluster), dtype=np.int64)
    edges = metrics.richness_edges(context.richness(catalogue), config.eval.richness_buckets)
    context_richness = context.richness(impressions["context_item_id"].to_numpy(np.int64))
    ratios = metrics.richness_bucket_ratios(impressions, context_richness, edges, MLLM)
    seeds = list(config.eval.seeds)
    return [
        RichnessBucket(
            bucket=bucket,
            richness_low=float(edges[bucket]),
            richness_high=float(edges[bucket + 1]),
            **{
                name: summarise(frame.reindex(index=seeds)[bucket].tolist()) for name, frame in ratios.items()
            },
        )
        for bucket in range(len(edges) - 1)
    ]


def build_report(
    impressions: pd.DataFrame, context: MetricContext, config: PipelineConfig
) -> ExperimentSummary:
    settings = config.eval
    seeds = list(settings.seeds)
    arms = arm_names(settings)
    return ExperimentSummary(
        reference_arm=EXPLOITATION,
        arms=list(arms),
        extra_arms=[arm for arm in arms if arm not in ARMS],  # diagnostics, outside the paper's claims
        seeds=seeds,
        days=settings.days,
        users_per_arm=settings.users_per_arm,
        slate_size=settings.slate_size,
        metrics={
            name: _by_arm(frame, seeds, arms)
            for name, frame in per_seed_metrics(impressions, context, config).items()
        },
        richness_buckets=richness_section(impressions, context, config),
        metric_help=dict(METRIC_HELP),
    )


def write_outputs(impressions: pd.DataFrame, summary: ExperimentSummary, directory: Path) -> ExperimentPaths:
    """Write both files atomically (each replaces its previous version whole)."""
    import pyarrow as pa

    table = pa.Table.from_pandas(impressions, preserve_index=False)
    parquet = write_parquet_atomic(table, directory / IMPRESSIONS_FILE)
    return ExperimentPaths(experiment=summary.write(directory / EXPERIMENT_FILE), impressions=parquet)

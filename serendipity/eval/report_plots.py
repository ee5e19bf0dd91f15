"""The report's figures, drawn with matplotlib (Agg) and returned as base64 PNG for inline embedding."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from serendipity.eval.replay_results import HitRate
from serendipity.eval.report_data import AggregateRow
from serendipity.eval.results import ExperimentSummary, RichnessBucket, Statistic
from serendipity.mllm.curves import pyplot

ARM_COLOURS = {"exploitation": "#7f7f7f", "exploration": "#1f77b4", "bandit": "#ff7f0e", "mllm": "#d62728"}


def _encode(figure: Any) -> str:
    plt = pyplot()
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def png_file_base64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def _value(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _mean(stats: Statistic | None) -> float:
    return math.nan if stats is None else _value(stats.mean)


def _errors(stats: Sequence[Statistic | None]) -> list[list[float]]:
    """Asymmetric error bars (below, above) of statistics; 0 where a bound is missing."""
    below, above = [], []
    for item in stats:
        item = item or Statistic()
        mean, low, high = _value(item.mean), _value(item.ci_low), _value(item.ci_high)
        below.append(0.0 if math.isnan(low) else max(0.0, mean - low))
        above.append(0.0 if math.isnan(high) else max(0.0, high - mean))
    return [below, above]


def curves_png(curves: Mapping[str, Sequence[float]]) -> str:
    plt = pyplot()
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(9, 3.2))
    loss_axis.plot(curves["step"], curves["loss"], marker="o")
    loss_axis.set(xlabel="step", ylabel="training loss", title="loss")
    for column in ("match_rate", "recall", "recall_at_k"):
        if column in curves:
            metric_axis.plot(curves["step"], curves[column], marker="o", label=column)
    metric_axis.set(xlabel="step", ylabel="share of held-out items", ylim=(0, 1), title="match rate / recall")
    metric_axis.legend(fontsize="small")
    return _encode(figure)


def aggregates_png(rows: Sequence[AggregateRow]) -> str:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(5, 3.2))
    stats = [Statistic(mean=r.mean_satisfaction, ci_low=r.ci_low, ci_high=r.ci_high) for r in rows]
    axis.bar([r.pair_class for r in rows], [_mean(s) for s in stats], yerr=_errors(stats), capsize=4)
    axis.set(ylabel="mean next-item satisfaction", title="satisfaction by pair class (95% CI)")
    return _encode(figure)


def figure6_png(experiment: ExperimentSummary) -> str:
    """Novelty gain % (x) vs positive-feedback change % (y) per arm, with 95% error bars."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(5.5, 4))
    for arm in experiment.arms:
        x, y = experiment.stat("novelty_gain_pct", arm), experiment.stat("positive_feedback_change_pct", arm)
        axis.errorbar(
            [_mean(x)],
            [_mean(y)],
            xerr=_errors([x]),
            yerr=_errors([y]),
            fmt="o",
            capsize=4,
            color=ARM_COLOURS.get(arm),
            label=arm,
        )
    axis.axhline(0, color="grey", linewidth=0.8)
    axis.axvline(0, color="grey", linewidth=0.8)
    reference = experiment.reference_arm or "exploitation"
    axis.set(
        xlabel=f"novel-impression gain % over {reference}",
        ylabel=f"positive-feedback change % vs {reference}",
        title="novelty vs quality (cf. the paper's Figure 6)",
    )
    axis.legend(fontsize="small")
    return _encode(figure)


def _arm_bars(axis: Any, experiment: ExperimentSummary, metric: str, title: str) -> None:
    arms = experiment.arms
    stats = [experiment.stat(metric, arm) for arm in arms]
    colours = [ARM_COLOURS.get(arm, "#2ca02c") for arm in arms]
    axis.bar(arms, [_mean(s) for s in stats], yerr=_errors(stats), capsize=4, color=colours)
    axis.set(title=title, ylabel=metric)
    axis.tick_params(axis="x", labelrotation=20)


def figure7_png(experiment: ExperimentSummary) -> str:
    plt = pyplot()
    figure, (users_axis, pairs_axis) = plt.subplots(1, 2, figsize=(9, 3.4))
    _arm_bars(users_axis, experiment, "engaged_user_share", "engaged users (cf. Figure 7a)")
    _arm_bars(pairs_axis, experiment, "unique_engaged_pairs", "unique engaged user-item pairs (Figure 7b)")
    return _encode(figure)


def figure8_png(buckets: Sequence[RichnessBucket]) -> str:
    """Relative gain % per bucket, in the order given (``ExperimentSummary.sorted_buckets``)."""
    plt = pyplot()
    labels = [f"{_value(b.richness_low):.2f}-{_value(b.richness_high):.2f}" for b in buckets]
    gains = [b.relative_gain_pct for b in buckets]
    figure, axis = plt.subplots(figsize=(6, 3.4))
    axis.bar(labels, [_mean(g) for g in gains], yerr=_errors(gains), capsize=4, color="#d62728")
    axis.axhline(0, color="grey", linewidth=0.8)
    axis.set(
        xlabel="visual richness of the context item (bucket range)",
        ylabel="relative gain % of MLLM candidates",
        title="gain by visual richness (cf. Figure 8)",
    )
    return _encode(figure)


def replay_png(methods: Mapping[str, HitRate]) -> str:
    plt = pyplot()
    names = list(methods)
    stats = [methods[name].statistic() for name in names]
    figure, axis = plt.subplots(figsize=(6, 3.2))
    axis.bar(names, [_mean(s) for s in stats], yerr=_errors(stats), capsize=4)
    axis.set(ylabel="hit rate of the held-out next item's cluster", title="offline replay (95% CI)")
    axis.tick_params(axis="x", labelrotation=15)
    return _encode(figure)

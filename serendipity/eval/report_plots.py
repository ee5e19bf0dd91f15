"""The report's figures, drawn with matplotlib (Agg) and returned as base64 PNG for inline embedding."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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


def _value(stats: Mapping[str, Any], key: str) -> float:
    value = stats.get(key)
    return math.nan if value is None else float(value)


def _errors(stats: Sequence[Mapping[str, Any]]) -> list[list[float]]:
    """Asymmetric error bars (below, above) of mean/ci_low/ci_high dicts; 0 where a bound is missing."""
    below, above = [], []
    for item in stats:
        mean, low, high = (_value(item, k) for k in ("mean", "ci_low", "ci_high"))
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


def aggregates_png(rows: Sequence[Mapping[str, Any]]) -> str:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(5, 3.2))
    stats = [{"mean": r["mean_satisfaction"], "ci_low": r["ci_low"], "ci_high": r["ci_high"]} for r in rows]
    axis.bar([r["pair_class"] for r in rows], [s["mean"] for s in stats], yerr=_errors(stats), capsize=4)
    axis.set(ylabel="mean next-item satisfaction", title="satisfaction by pair class (95% CI)")
    return _encode(figure)


def figure6_png(experiment: Mapping[str, Any]) -> str:
    """Novelty gain % (x) vs positive-feedback change % (y) per arm, with 95% error bars."""
    plt = pyplot()
    metrics = experiment["metrics"]
    figure, axis = plt.subplots(figsize=(5.5, 4))
    for arm in experiment["arms"]:
        x, y = metrics["novelty_gain_pct"][arm], metrics["positive_feedback_change_pct"][arm]
        axis.errorbar(
            [_value(x, "mean")],
            [_value(y, "mean")],
            xerr=_errors([x]),
            yerr=_errors([y]),
            fmt="o",
            capsize=4,
            color=ARM_COLOURS.get(arm),
            label=arm,
        )
    axis.axhline(0, color="grey", linewidth=0.8)
    axis.axvline(0, color="grey", linewidth=0.8)
    reference = experiment.get("reference_arm", "exploitation")
    axis.set(
        xlabel=f"novel-impression gain % over {reference}",
        ylabel=f"positive-feedback change % vs {reference}",
        title="novelty vs quality (cf. the paper's Figure 6)",
    )
    axis.legend(fontsize="small")
    return _encode(figure)


def _arm_bars(axis: Any, experiment: Mapping[str, Any], metric: str, title: str) -> None:
    arms = experiment["arms"]
    stats = [experiment["metrics"][metric][arm] for arm in arms]
    colours = [ARM_COLOURS.get(arm, "#2ca02c") for arm in arms]
    axis.bar(arms, [_value(s, "mean") for s in stats], yerr=_errors(stats), capsize=4, color=colours)
    axis.set(title=title, ylabel=metric)
    axis.tick_params(axis="x", labelrotation=20)


def figure7_png(experiment: Mapping[str, Any]) -> str:
    plt = pyplot()
    figure, (users_axis, pairs_axis) = plt.subplots(1, 2, figsize=(9, 3.4))
    _arm_bars(users_axis, experiment, "engaged_user_share", "engaged users (cf. Figure 7a)")
    _arm_bars(pairs_axis, experiment, "unique_engaged_pairs", "unique engaged user-item pairs (Figure 7b)")
    return _encode(figure)


def figure8_png(buckets: Sequence[Mapping[str, Any]]) -> str:
    plt = pyplot()
    ordered = sorted(buckets, key=lambda b: b["richness_low"])
    labels = [f"{b['richness_low']:.2f}-{b['richness_high']:.2f}" for b in ordered]
    gains = [b["relative_gain_pct"] for b in ordered]
    figure, axis = plt.subplots(figsize=(6, 3.4))
    axis.bar(labels, [_value(g, "mean") for g in gains], yerr=_errors(gains), capsize=4, color="#d62728")
    axis.axhline(0, color="grey", linewidth=0.8)
    axis.set(
        xlabel="visual richness of the context item (bucket range)",
        ylabel="relative gain % of MLLM candidates",
        title="gain by visual richness (cf. Figure 8)",
    )
    return _encode(figure)


def replay_png(methods: Mapping[str, Mapping[str, Any]]) -> str:
    plt = pyplot()
    names = list(methods)
    stats = [methods[name] for name in names]
    figure, axis = plt.subplots(figsize=(6, 3.2))
    axis.bar(names, [_value(s, "mean") for s in stats], yerr=_errors(stats), capsize=4)
    axis.set(ylabel="hit rate of the held-out next item's cluster", title="offline replay (95% CI)")
    axis.tick_params(axis="x", labelrotation=15)
    return _encode(figure)

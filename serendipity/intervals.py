"""Confidence intervals over per-seed results."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def mean_with_t_half_width(values: Iterable[float | None]) -> tuple[float, float]:
    """Mean and half-width of the 95% Student-t interval over the finite values.

    NaN stands for undefined: the mean without any finite value, the half-width with fewer than two.
    """
    from scipy import stats

    finite = np.array([v for v in values if v is not None and math.isfinite(float(v))], dtype=float)
    if len(finite) == 0:
        return math.nan, math.nan
    mean = float(finite.mean())
    if len(finite) == 1:
        return mean, math.nan
    half = float(stats.t.ppf(0.975, len(finite) - 1) * finite.std(ddof=1) / math.sqrt(len(finite)))
    return mean, half


def wilson_interval(hits: float, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (NaN for no trials)."""
    if trials <= 0:
        return math.nan, math.nan
    rate = hits / trials
    denominator = 1 + z * z / trials
    centre = (rate + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def exact_mcnemar(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (binomial test at 1/2)."""
    from scipy import stats

    discordant = only_first + only_second
    if discordant == 0:
        return 1.0
    return float(stats.binomtest(only_first, discordant, 0.5).pvalue)


def paired_bootstrap_difference(
    first: np.ndarray, second: np.ndarray, *, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``first - second`` over paired items and its 95% percentile bootstrap interval."""
    first, second = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if len(first) != len(second):
        raise ValueError(f"paired samples differ in length: {len(first)} and {len(second)}")
    if len(first) == 0:
        return math.nan, math.nan, math.nan
    difference = first - second
    rng = np.random.default_rng(seed)
    means = difference[rng.integers(0, len(difference), size=(resamples, len(difference)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(difference.mean()), float(low), float(high)

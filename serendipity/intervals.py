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

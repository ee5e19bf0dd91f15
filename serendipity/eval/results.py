"""Typed results of the simulated live experiment, shared by their writer and their readers.

- ``Statistic``: a mean over seeds with its 95% interval (and the per-seed values it came from).
- ``RichnessBucket``: the MLLM arm's positive ratio against the other arms' in one visual-richness bucket.
- ``ExperimentPaths``: the files the experiment wrote (what ``ray_jobs.evaluate.run`` returns).
- ``ExperimentSummary``: ``experiment.json``, written by ``serendipity.eval.summary.write_outputs`` with
  ``write`` and read back with ``ExperimentSummary.read`` by the report (its claims, HTML page and figures).

The JSON keys are the field names. Reading is tolerant of documents written by earlier runs (or by hand):
a field the file lacks is None (or empty), and ``to_json`` writes back only the fields that were set (and
any keys this version does not know), so a document read and written again keeps its keys. Undefined
values (a gain over a zero reference, an interval from one seed) are null on disk and None here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from serendipity.io import json_safe, write_json_atomic


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready dict (the fields that were set; NaN becomes null)."""
        return json_safe(self.model_dump(mode="python", exclude_unset=True))


class Statistic(_Result):
    """A mean and its 95% interval (None where undefined), and the per-seed values when over seeds."""

    mean: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    per_seed: list[float | None] | None = None


class RichnessBucket(_Result):
    """One quantile bucket of the context items' visual richness (Figure 8)."""

    bucket: int | None = None
    richness_low: float | None = None
    richness_high: float | None = None
    mllm_positive_ratio: Statistic | None = None
    other_positive_ratio: Statistic | None = None
    relative_gain_pct: Statistic | None = None


class ExperimentSummary(_Result):
    """``experiment.json``: every metric per arm over seeds, the richness buckets and the settings."""

    model_config = ConfigDict(frozen=True, extra="allow")  # keys of other versions are kept as they are

    reference_arm: str | None = None
    arms: list[str] = []
    extra_arms: list[str] = []  # diagnostics, outside the paper's claims
    seeds: list[int] | None = None
    days: int | None = None
    users_per_arm: int | None = None
    slate_size: int | None = None
    metrics: dict[str, dict[str, Statistic]] = {}  # metric -> arm -> mean and interval over seeds
    richness_buckets: list[RichnessBucket] = []
    metric_help: dict[str, str] = {}

    def stat(self, metric: str, arm: str) -> Statistic | None:
        """The metric's statistic for the arm (None when the document lacks it)."""
        return self.metrics.get(metric, {}).get(arm)

    def sorted_buckets(self) -> list[RichnessBucket]:
        """The richness buckets from the poorest to the richest (by their lower bound)."""
        return sorted(
            self.richness_buckets, key=lambda b: math.inf if b.richness_low is None else b.richness_low
        )

    def write(self, path: Path) -> Path:
        """Write the summary (atomically) to ``path``."""
        return write_json_atomic(self.to_json(), path)

    @classmethod
    def read(cls, path: Path) -> ExperimentSummary:
        """The summary written at ``path`` (by this version, an earlier one or by hand)."""
        return cls.model_validate_json(path.read_bytes())


@dataclass(frozen=True)
class ExperimentPaths:
    """The files the experiment wrote."""

    experiment: Path  # experiment.json, an ExperimentSummary
    impressions: Path  # impressions.parquet

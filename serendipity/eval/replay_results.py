"""Typed results of the offline replay, shared by their writer and their readers.

- ``HitRate``: hits, hit rate and its 95% interval of one guess on a subset of held-out cases.
- ``ReplaySubset``: the cases of one subset and every guess's ``HitRate``.
- ``TrainingOverlap``: how the held-out items sit against the sequence model's training cutoff.
- ``ValidationPeriodReplay``: the logged serendipitous transitions after the calibration cut.
- ``ReplayReport``: ``reports/replay.json``, written by ``serendipity.eval.replay.run_replay`` with ``write``
  and read back with ``ReplayReport.read`` by the report (its claims and HTML page).

The JSON keys are the field names. Reading is tolerant of documents written by earlier runs (or by hand):
a field the file lacks is None (or empty), and ``to_json`` writes back only the fields that were set (and
any keys this version does not know), so a document read and written again keeps its keys. An undefined
hit rate (no cases) is null on disk and None here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from serendipity.eval.results import Statistic
from serendipity.io import json_safe, write_json_atomic


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready dict (the fields that were set; NaN becomes null)."""
        return json_safe(self.model_dump(mode="python", exclude_unset=True))


class HitRate(_Result):
    """Hits of one guess, its hit rate and 95% interval (None where undefined).

    ``hits`` is a count, or an expected count (a float) for the random sibling.
    """

    hits: int | float | None = None
    mean: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None

    def statistic(self) -> Statistic:
        """The hit rate as a ``Statistic`` (mean and interval)."""
        return Statistic(mean=self.mean, ci_low=self.ci_low, ci_high=self.ci_high)


class ReplaySubset(_Result):
    """One subset of the held-out cases and every guess's hit rate on it."""

    cases: int | None = None
    methods: dict[str, HitRate] = {}


class TrainingOverlap(_Result):
    """Held-out items before and after the sequence model's training cutoff."""

    retriever_cutoff: str | None = None
    held_out_before_retriever_cutoff: int | None = None
    held_out_after_retriever_cutoff: int | None = None
    note: str | None = None


class ValidationPeriodReplay(_Result):
    """Logged serendipitous transitions after the calibration cut, split by the context item's evidence."""

    protocol: str | None = None
    prior_snapshot: str | None = None
    subsets: dict[str, ReplaySubset] = {}


class ReplayReport(_Result):
    """``reports/replay.json``: the protocol, the counts, and every guess's hit rate per subset."""

    model_config = ConfigDict(frozen=True, extra="allow")  # keys of other versions are kept as they are

    protocol: str | None = None
    level: int | None = None
    engaged_satisfaction: float | None = None
    users_held_out: int | None = None
    excluded: dict[str, int] = {}  # why cases were left out -> how many
    mllm_coverage: float | None = None
    served_model_versions: list[str] = []
    training_overlap: TrainingOverlap | None = None
    subsets: dict[str, ReplaySubset] = {}
    method_help: dict[str, str] = {}
    validation_period: ValidationPeriodReplay | None = None

    def write(self, path: Path) -> Path:
        """Write the report (atomically) to ``path``."""
        return write_json_atomic(self.to_json(), path)

    @classmethod
    def read(cls, path: Path) -> ReplayReport:
        """The report written at ``path`` (by this version, an earlier one or by hand)."""
        return cls.model_validate_json(path.read_bytes())

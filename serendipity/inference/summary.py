"""Typed figures of an inference run: what ``run_inference`` returns and ``ray_jobs.infer`` records.

``InferenceSummary.write`` writes the job's stats JSON (``stats/infer.json``) and ``InferenceSummary.read``
reads it back; the JSON keys are the field names (``first_batch_seconds`` and ``steady_items_per_s`` only
for a Ray Data run, ``in_process`` only for a delta run in the driver).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from serendipity.io import write_json_atomic


@dataclass(frozen=True)
class InferenceTally:
    """What the predicting step did: items inferred, answered with a cluster, decoded with the fallback."""

    inferred: int = 0
    inferred_ok: int = 0
    media_fallback: int = 0
    actor_peak_rss_mb: float = 0.0  # the predictor actors' peak resident memory (0 without actors)
    in_process: bool = False  # a small delta predicted in the driver
    first_batch_seconds: float | None = None  # Ray Data: startup (actors, model loads) until the first batch
    steady_items_per_s: float | None = None  # Ray Data: throughput after the first batch

    def plus(self, other: InferenceTally) -> InferenceTally:
        """The counts of both; the larger peak memory."""
        return replace(
            self,
            inferred=self.inferred + other.inferred,
            inferred_ok=self.inferred_ok + other.inferred_ok,
            media_fallback=self.media_fallback + other.media_fallback,
            actor_peak_rss_mb=max(self.actor_peak_rss_mb, other.actor_peak_rss_mb),
        )


@dataclass(frozen=True)
class InferenceSummary:
    """One inference run's figures."""

    corpus_items: int
    to_infer: int
    tally: InferenceTally
    output_rows: int
    error_rows: int
    model_version: str
    seconds: float
    driver_peak_rss_mb: float

    def to_json(self) -> dict[str, Any]:
        tally = asdict(self.tally)
        if not self.tally.in_process:
            del tally["in_process"]
        if self.tally.first_batch_seconds is None:
            del tally["first_batch_seconds"], tally["steady_items_per_s"]
        plain = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "tally"}
        return {**plain, **tally}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InferenceSummary:
        tally = InferenceTally(**{f.name: data[f.name] for f in fields(InferenceTally) if f.name in data})
        plain = {f.name: data[f.name] for f in fields(cls) if f.name != "tally"}
        return cls(tally=tally, **plain)

    def write(self, path: Path) -> Path:
        return write_json_atomic(self.to_json(), path)

    @classmethod
    def read(cls, path: Path) -> InferenceSummary:
        return cls.from_json(json.loads(path.read_text()))

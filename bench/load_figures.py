"""Typed figures of the serve load benchmarks, shared by their writers and readers.

- ``LoadRun``: one open-loop run of the load generator at one rate (``bench.serve_load``'s ``load`` mode
  prints it as one JSON line; ``run_load`` reads it back); ``bench.soak`` and ``bench.serve_profile`` use it.
- ``RateRow``, ``Overload``, ``Recovery`` and ``ServeLoadResult``: ``bench/results/serve_load.json``,
  written by ``bench.serve_load`` with ``ServeLoadResult.write`` and read by ``bench.soak`` with
  ``ServeLoadResult.read`` (its ``capacity_rps``).
- ``SoakWindow`` and ``SoakResult``: ``bench/results/soak.json``, written by ``bench.soak``.

The JSON keys are the field names. As in ``serendipity.mllm.results``, ``to_json`` writes the fields that
were set (a field left out, like ``elapsed_s`` of a run whose generator timed out, stays out; a None that
was set is written as null), and reading is tolerant: a field a file lacks is None, keys it has beyond the
fields (notes added by hand to a results file) are kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict


class _Figures(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready dict of the fields that were set, in field order."""
        return self.model_dump(mode="python", exclude_unset=True)


class LoadRun(_Figures):
    """One open-loop run: requests sent and answered, errors by kind, latency percentiles (ms)."""

    rate: float
    sent: int
    ok: int
    errors: dict[str, int] = {}  # by kind: "http 503", an aiohttp error's class name, a time-out
    shed: int = 0  # 503s with Retry-After (the admission front's refusals), among the errors
    other_errors: int = 0
    elapsed_s: float | None = None  # left out when the load process ran over its time limit
    throughput_rps: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    shed_p99_ms: float | None = None
    generator_cpu_s: float | None = None  # the load process's CPU seconds

    def line(self) -> str:
        """The load process's output line."""
        return json.dumps(self.to_json())

    @classmethod
    def from_line(cls, line: str) -> LoadRun:
        return cls.model_validate(json.loads(line))


class RateRow(_Figures):
    """/recommend and the no-op deployment at one rate; ``met``: p99 ratio <= 2 with zero errors."""

    rate: float
    recommend: LoadRun
    noop: LoadRun
    p99_ratio: float | None = None
    met: bool = False


class Overload(_Figures):
    """/recommend at 3x the capacity: accepted vs shed requests."""

    rate: float
    sent: int
    accepted: int
    shed: int
    accepted_p99_ms: float | None = None
    shed_p99_ms: float | None = None
    other_errors: int = 0
    generator_cpu_s: float | None = None


class Recovery(_Figures):
    """/recommend at half the capacity right before and right after the overload."""

    rate: float
    before: LoadRun
    after: LoadRun
    p99_change: float | None = None


class ServeLoadResult(_Figures):
    """``bench/results/serve_load.json``: every rate's row, the capacity, the overload and the recovery."""

    command: str | None = None
    front: str | None = None
    duration_s: float | None = None
    k: int | None = None
    cpus: int | None = None
    load_average_before: list[float] = []
    rates: list[RateRow] = []
    capacity_rps: float | None = None
    overload: Overload | None = None  # only when some rate met the target
    recovery: Recovery | None = None
    load_average_after: list[float] = []
    under_load: bool | None = None
    generator_cpu_s: float | None = None

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, allow_nan=False))
        return path

    @classmethod
    def read(cls, path: Path) -> Self:
        return cls.model_validate(json.loads(path.read_text()))


class SoakWindow(LoadRun):
    """One soak window: its load run, when it ended, and the endpoint's memory and the load then."""

    at_s: float | None = None  # seconds since the soak began
    rss_mib: float | None = None  # the endpoint's whole process tree
    load_avg_1m: float | None = None


class SoakResult(_Figures):
    """``bench/results/soak.json``: the totals over every window, the memory trend, the windows."""

    command: str | None = None
    config: str | None = None
    rate_rps: float | None = None
    duration_s: float | None = None
    window_s: float | None = None
    cpus: int | None = None
    load_average_before: list[float] = []
    load_average_after: list[float] = []
    sent: int = 0
    ok: int = 0
    shed: int = 0
    other_errors: int = 0
    worst_window_p99_ms: float | None = None
    rss_mib_first: float | None = None
    rss_mib_last: float | None = None
    memory_growth: float | None = None
    windows: list[SoakWindow] = []

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, path: Path) -> Self:
        return cls.model_validate(json.loads(path.read_text()))

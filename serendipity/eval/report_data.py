"""Typed sections of the evaluation report, shared by its builder, its claims and its HTML page.

- ``FinetuneSection``: the fine-tuning curves and (once fine-tuning wrote one) its ``FinetuneSummary``.
- ``AblationSection`` (``AblationRow``, ``AblationFinding``, ``AblationSettings``): the latest ablation run's
  table, as ``serendipity.mllm.ablation_report`` writes it.
- ``AggregatesSection`` (``AggregateRow``): next-item satisfaction per pair class.
- ``ReportData``: every section's data (None when its input is absent); the experiment's is an
  ``ExperimentSummary``, the replay's a ``ReplayReport``.
- ``ClaimCheck``: one of the paper's claims, checked (``serendipity.eval.claims``).
- ``EvaluationReport``: ``report.json``, written by ``serendipity.eval.report.write_report`` with ``write``.

Each ``to_json`` gives the section as ``report.json`` holds it (keys and values as the report always wrote
them); rows of other versions keep their unknown keys.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from serendipity.eval.replay_results import ReplayReport
from serendipity.eval.results import ExperimentSummary
from serendipity.io import json_safe, write_json_atomic
from serendipity.mllm.results import FinetuneSummary

SECTION_TITLES = {
    "finetune": "Fine-tuning: curves, served recall and the publish gate",
    "ablation": "Offline ablation (prompt styles, frames, thumbnails)",
    "aggregates": "Next-item satisfaction: similar vs serendipitous vs distant",
    "experiment": "Simulated live experiment (arms)",
    "replay": "Offline replay on logged next items",
}
# the fine-tuning summary's fields the report shows (serendipity.mllm.results.FinetuneSummary)
FINETUNE_FIELDS = ("model_version", "feature_version", "steps", "prompt_style", "num_frames",
                   "served_metrics", "final_metrics", "non_llm_baseline", "prior_weight", "validation",
                   "gate")  # fmt: skip


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")  # keys of other versions are kept as they are

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="python", exclude_unset=True)


@dataclass(frozen=True)
class FinetuneSection:
    """The fine-tuning curves (column -> values, by step) and the run's summary when it wrote one."""

    curves: dict[str, list[Any]]
    summary: FinetuneSummary | None = None

    def to_json(self) -> dict[str, Any]:
        """The curves, and the summary's ``FINETUNE_FIELDS`` (null where it lacks one)."""
        if self.summary is None:
            return {"curves": self.curves}
        shown = self.summary.model_dump(include=set(FINETUNE_FIELDS), exclude_unset=True)
        return {"curves": self.curves, "summary": dict.fromkeys(FINETUNE_FIELDS) | shown}


class AblationRow(_Row):
    """One experiment x arm of the ablation table: ``<metric>_mean`` and ``<metric>_ci95`` over seeds."""

    experiment: str | None = None
    arm: str | None = None
    seeds: Any = None

    def figure(self, metric: str) -> tuple[float | None, float | None]:
        """The metric's mean over seeds and its 95% half-width (None where absent or undefined)."""
        extra = self.model_extra or {}
        mean, half = extra.get(f"{metric}_mean"), extra.get(f"{metric}_ci95")
        return (None if mean is None else float(mean)), (None if half is None else float(half))


class AblationFinding(_Row):
    """One of the paper's findings, checked on the ablation's data."""

    finding: str = ""
    verdict: str = ""
    evidence: str = ""


class AblationSettings(_Row):
    """How the ablation ran: the command that reruns it, its seeds, steps and when it finished."""

    command: str | None = None
    seeds: list[int] | None = None
    max_steps: int | None = None
    finished: str | None = None


class AblationSection(BaseModel):
    """The ablation table's settings, rows, findings and non-LLM baseline (None where the file lacks them)."""

    model_config = ConfigDict(frozen=True)

    settings: AblationSettings | None = None
    table: list[AblationRow] | None = None
    findings: list[AblationFinding] | None = None
    non_llm_baseline: dict[str, Any] | None = None

    @classmethod
    def of(cls, document: dict[str, Any]) -> AblationSection:
        return cls.model_validate({key: document.get(key) for key in cls.model_fields})

    def rows(self) -> dict[str | None, AblationRow]:
        """The table's rows by arm."""
        return {row.arm: row for row in self.table or []}

    def to_json(self) -> dict[str, Any]:
        def dumped(value: Any) -> Any:
            if isinstance(value, list):
                return [dumped(item) for item in value]
            return value.to_json() if isinstance(value, _Row) else value

        return {name: dumped(getattr(self, name)) for name in type(self).model_fields}


class AggregateRow(_Row):
    """Next-item satisfaction of one pair class (similar, serendipitous, distant) with its 95% interval."""

    pair_class: str
    count: int
    mean_satisfaction: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True)
class AggregatesSection:
    """The satisfaction aggregates at the mining level, one row per pair class."""

    level: int
    rows: list[AggregateRow]

    def to_json(self) -> dict[str, Any]:
        return {"level": self.level, "rows": [row.to_json() for row in self.rows]}


@dataclass(frozen=True)
class ReportData:
    """Every section's data (None when its input is absent)."""

    finetune: FinetuneSection | None = None
    ablation: AblationSection | None = None
    aggregates: AggregatesSection | None = None
    experiment: ExperimentSummary | None = None
    replay: ReplayReport | None = None

    def section(self, name: str) -> Any:
        """The data of the section ``name`` (one of ``SECTION_TITLES``)."""
        return getattr(self, name)


@dataclass(frozen=True)
class ClaimCheck:
    claim_id: str
    claim: str
    status: str
    evidence: str
    source: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class EvaluationReport:
    """``report.json``: every section (its data, input file and producing command) and the checked claims."""

    name: str
    work_dir: str
    data: ReportData
    sources: dict[str, Path]  # section -> the input it reads
    commands: dict[str, str]  # section -> the command that writes that input
    claims: list[ClaimCheck] = field(default_factory=list)

    def section_json(self, name: str) -> dict[str, Any]:
        data = self.data.section(name)
        return {
            "title": SECTION_TITLES[name],
            "present": data is not None,
            "source": str(self.sources[name]),
            "command": self.commands[name],
            "data": None if data is None else data.to_json(),
        }

    def to_json(self) -> dict[str, Any]:
        sections = {name: self.section_json(name) for name in SECTION_TITLES}
        claims = [check.as_dict() for check in self.claims]
        document = {"name": self.name, "work_dir": self.work_dir, "sections": sections, "claims": claims}
        return json_safe(document)

    def write(self, path: Path) -> Path:
        """Write ``report.json`` (atomically) to ``path``."""
        return write_json_atomic(self.to_json(), path)

"""Typed results of fine-tuning, shared by their writer and their readers.

- ``GateDecision`` (with ``RecallFigures`` and ``PairedComparison``): what the publish gate
  (``serendipity.mllm.gate.decide``) decided, and on which figures.
- ``FinetuneSummary``: ``finetune/summary.json``, written by ``run_finetune`` with ``write`` and read back
  with ``FinetuneSummary.read`` by inference (``served_choice``), the report and its claims, the CLI.
- ``ServedChoice``: what inference serves, as the last fine-tuning run decided (the summary's ``served``).

The JSON keys are the field names. Reading is tolerant of summaries written by earlier runs (or by hand):
a field the file lacks is None (or empty), and ``to_json`` writes back only the fields that were set, so a
summary read and written again keeps its keys. A recall that was NaN is written as null and read as None.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_serializer, model_validator

from serendipity.io import json_safe, write_json_atomic

ServedKind = Literal["model", "transition_prior", "non_llm_guess"]
MetricRow = dict[str, Any]  # one evaluation of the training history (step, loss, match_rate, recall, ...)


@dataclass(frozen=True)
class ServedChoice:
    """What inference serves, as the last fine-tuning run decided."""

    kind: ServedKind
    model_version: str  # the model's version; the prior's or the guess's name otherwise
    prior_weight: float = 0.0  # lambda of the combined nominator (model kind only)
    text_weight: float = 0.0  # mu of the text-similarity feature (model kind only)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready dict (the fields that were set; NaN becomes null)."""
        return json_safe(self.model_dump(mode="python", exclude_unset=True))


class RecallFigures(_Result):
    """Hits, items, recall and its 95% Wilson interval of one nominator on some items."""

    # summaries of earlier runs kept an evaluation row (match_rate, recall_at_k, ...) as served_metrics
    model_config = ConfigDict(frozen=True, extra="allow")

    hits: int | None = None
    items: int | None = None
    recall: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None

    def extra_metric(self, name: str) -> float | None:
        """A figure of an earlier run's evaluation row (``match_rate``, ``recall_at_k``), None if absent."""
        value = (self.model_extra or {}).get(name)
        return None if value is None else float(value)


class PairedComparison(_Result):
    """The candidate against one reference on the same items."""

    n: int | None = None
    candidate_recall: float | None = None
    reference_recall: float | None = None
    difference: float | None = None
    difference_ci_low: float | None = None
    difference_ci_high: float | None = None
    only_candidate: int | None = None
    only_reference: int | None = None
    p_value: float | None = None
    test: str | None = None


class GateDecision(_Result):
    """The publish gate's decision, every paired comparison and the best reference."""

    rule: str | None = None
    margin: float | None = None
    alpha: float | None = None
    n: int | None = None
    small_sample: bool = False
    candidate: RecallFigures | None = None
    references: dict[str, RecallFigures] = {}
    comparisons: dict[str, PairedComparison] = {}
    worse_than: list[str] = []
    best_reference: str | None = None
    decision: str | None = None
    served_model_version: str | None = None  # set by fine-tuning once it knows what is served


class EvidenceGroup(_Result):
    """Recall figures of every judged nominator on the validation items of one group (warm or cold).

    On disk the group is flat: ``{"n": ..., "<nominator>": {recall figures}, ...}``.
    """

    n: int | None = None
    nominators: dict[str, RecallFigures] = {}

    @model_validator(mode="before")
    @classmethod
    def _from_flat(cls, data: Any) -> Any:
        if isinstance(data, dict) and "nominators" not in data:
            return {"n": data.get("n"), "nominators": {k: v for k, v in data.items() if k != "n"}}
        return data

    @model_serializer(mode="wrap")
    def _to_flat(self, handler: Any) -> dict[str, Any]:
        dumped = handler(self)
        return {**({"n": dumped["n"]} if "n" in dumped else {}), **dumped.get("nominators", {})}


class Validation(_Result):
    """Recall figures on the validation items, per nominator and split by the context item's evidence."""

    nominators: dict[str, RecallFigures] = {}
    by_evidence: dict[str, EvidenceGroup] = {}


class Calibration(_Result):
    """The calibration split's fit of the combined nominator's weights."""

    n: int | None = None
    weight: float | None = None
    text_weight: float | None = None
    recall_by_weight: dict[str, float | None] = {}
    recall_by_weight_and_text_weight: dict[str, float | None] = {}


class FinetuneSummary(_Result):
    """``finetune/summary.json``: the checkpoint, the judged figures, the gate and what is served."""

    base_model_dir: str | None = None
    steps: int | None = None
    prompt_style: str | None = None
    num_frames: int | None = None
    level: int | None = None
    lora: bool | None = None
    final_metrics: MetricRow | None = None  # the last evaluation of training (free decoding)
    checkpoint: str | None = None
    resumed_from_step: int | None = None
    model_dir: str | None = None
    model_version: str | None = None
    served: ServedChoice | None = None
    feature_version: str | None = None  # the model_version the written features carry
    served_metrics: RecallFigures | None = None  # the served nominator's validation figures
    non_llm_baseline: RecallFigures | None = None
    prior: dict[str, Any] | None = None  # serendipity.nomination.prior.PriorInfo, as written
    prior_weight: float | None = None
    text_weight: float | None = None
    calibration: Calibration | None = None
    validation: Validation | None = None
    gate: GateDecision | None = None
    history: list[MetricRow] = []

    def write(self, path: Path) -> Path:
        """Write the summary (atomically) to ``path``."""
        return write_json_atomic(self.to_json(), path)

    @classmethod
    def read(cls, path: Path) -> FinetuneSummary:
        """The summary written at ``path`` (by this version or an earlier one)."""
        return cls.model_validate_json(path.read_bytes())

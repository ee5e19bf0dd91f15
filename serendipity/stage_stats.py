"""Typed stats of the Spark stages, shared by the jobs that write them and every reader.

Each Spark job (``spark_jobs.<job>.run``) returns its stats and writes them as
``WorkLayout.job_stats_path(job)`` with ``write_stage_stats``; readers (``bench.spark_chain``,
``bench.spark_submit_chain``, the Spark tests) read them back with ``read_stage_stats(layout, job)``
and use attributes.

``StageStats`` is what every stage's stats say (``rows_in``, ``output_figures``). On disk the jobs after
validate write ``{"job": ..., "inputs": {...}, "outputs": {...}}`` (``InOutStats``), with
fixed keys per job (``AggregatesStats``, ``PairsStats``, ...); the validate job writes its row counts per
dataset file (``ValidateStats``). The JSON keys are the field names; keys a file has beyond them are ignored,
and the curate stats of older runs (which counted ``context_cluster_scores`` in) read too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, TypeVar, overload

from pydantic import BaseModel, ConfigDict

from serendipity.io import write_json_atomic
from serendipity.layout import WorkLayout
from serendipity.schema import INTERACTIONS_FILE


class _Figures(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready dict, without the figures only older files carry (None when not read from one)."""
        return self.model_dump(mode="python", exclude_none=True)


class StageStats(_Figures):
    """What every Spark stage's stats say: its job, its main input's row count, its output figures."""

    JOB: ClassVar[str]

    @property
    def rows_in(self) -> int:
        """Rows of the job's main input (what its throughput is measured in)."""
        raise NotImplementedError

    def output_figures(self) -> dict[str, Any]:
        """The output figures as JSON (what bench records for the job)."""
        raise NotImplementedError

    def write(self, path: Path) -> Path:
        return write_json_atomic(self.to_json(), path)

    @classmethod
    def read(cls, path: Path) -> Self:
        return cls.model_validate(json.loads(path.read_text()))


class ValidateStats(StageStats):
    """``stats/validate.json``: rows per dataset file read, usable and quarantined; media problems."""

    JOB: ClassVar[str] = "validate"

    input_rows: dict[str, int]
    output_rows: dict[str, int]
    quarantined_rows: dict[str, int]
    media_problems: int
    fatal: bool

    @property
    def rows_in(self) -> int:
        return self.input_rows[INTERACTIONS_FILE]

    def output_figures(self) -> dict[str, Any]:
        return dict(self.output_rows)


class InOutStats(StageStats):
    """A job's stats: its name, its input row counts, its output figures (fixed keys per job)."""

    MAIN_INPUT: ClassVar[str]  # the field of ``inputs`` that counts the job's main input

    job: str
    inputs: _Figures
    outputs: _Figures

    @property
    def rows_in(self) -> int:
        return int(getattr(self.inputs, self.MAIN_INPUT))

    def output_figures(self) -> dict[str, Any]:
        return self.outputs.to_json()


class LogInputs(_Figures):
    """The interaction log and the items catalog, in rows."""

    interactions: int
    items: int


class PairsInputs(_Figures):
    serendipitous_pairs: int


class BuildTreeInputs(_Figures):
    items: int
    interactions: int


class BuildTreeOutputs(_Figures):
    items: int  # items placed in the tree
    clusters: int
    items_with_thumbnail: int


class BuildTreeStats(InOutStats):
    JOB: ClassVar[str] = "build_tree"
    MAIN_INPUT: ClassVar[str] = "items"

    job: Literal["build_tree"] = "build_tree"
    inputs: BuildTreeInputs
    outputs: BuildTreeOutputs


class AggregatesOutputs(_Figures):
    pairs: int
    overall_rows: int
    per_cluster_rows: int


class AggregatesStats(InOutStats):
    JOB: ClassVar[str] = "aggregates"
    MAIN_INPUT: ClassVar[str] = "interactions"

    job: Literal["aggregates"] = "aggregates"
    inputs: LogInputs
    outputs: AggregatesOutputs


class PairsOutputs(_Figures):
    serendipitous_pairs: int
    context_cluster_scores: int


class PairsStats(InOutStats):
    JOB: ClassVar[str] = "pairs"
    MAIN_INPUT: ClassVar[str] = "interactions"

    job: Literal["pairs"] = "pairs"
    inputs: LogInputs
    outputs: PairsOutputs


class PriorOutputs(_Figures):
    pairs_by_split: dict[str, int]
    cluster_prior_rows: int
    warm_items: int
    shrinkage: float
    snapshot: str
    train_end: str  # ISO timestamps of the time cuts
    calibration_end: str


class PriorStats(InOutStats):
    JOB: ClassVar[str] = "prior"
    MAIN_INPUT: ClassVar[str] = "serendipitous_pairs"

    job: Literal["prior"] = "prior"
    inputs: PairsInputs
    outputs: PriorOutputs


class CurateInputs(_Figures):
    serendipitous_pairs: int | None = None  # None in files of older runs, which counted the scores
    clusters: int
    context_cluster_scores: int | None = None  # older runs only


class CurateOutputs(_Figures):
    examples: int
    examples_by_split: dict[str, int]
    target_clusters: int
    descriptions: int
    items_by_split: dict[str, int] = {}  # empty in files of older runs


class CurateStats(InOutStats):
    JOB: ClassVar[str] = "curate"
    MAIN_INPUT: ClassVar[str] = "serendipitous_pairs"

    job: Literal["curate"] = "curate"
    inputs: CurateInputs
    outputs: CurateOutputs

    @property
    def rows_in(self) -> int:
        counted = self.inputs.serendipitous_pairs
        if counted is None:  # a file of an older run
            counted = self.inputs.context_cluster_scores
        return int(counted or 0)


class CorpusInputs(_Figures):
    interactions: int


class CorpusOutputs(_Figures):
    corpus_items: int
    delta_items: int
    achieved_coverage: float


class CorpusStats(InOutStats):
    JOB: ClassVar[str] = "corpus"
    MAIN_INPUT: ClassVar[str] = "interactions"

    job: Literal["corpus"] = "corpus"
    inputs: CorpusInputs
    outputs: CorpusOutputs


class UserHistoryOutputs(_Figures):
    user_history_rows: int
    item_meta_rows: int
    interactions_outside_catalog: int


class UserHistoryStats(InOutStats):
    JOB: ClassVar[str] = "user_history"
    MAIN_INPUT: ClassVar[str] = "interactions"

    job: Literal["user_history"] = "user_history"
    inputs: LogInputs
    outputs: UserHistoryOutputs


STATS_BY_JOB: dict[str, type[StageStats]] = {
    cls.JOB: cls
    for cls in (
        ValidateStats,
        BuildTreeStats,
        AggregatesStats,
        PairsStats,
        PriorStats,
        CurateStats,
        CorpusStats,
        UserHistoryStats,
    )
}
S = TypeVar("S", bound=StageStats)


def write_stage_stats(layout: WorkLayout, stats: S) -> S:
    """Write ``stats`` to ``layout.job_stats_path`` of its job; returns them."""
    stats.write(layout.job_stats_path(stats.JOB))
    return stats


@overload
def read_stage_stats(layout: WorkLayout, job: type[S]) -> S: ...
@overload
def read_stage_stats(layout: WorkLayout, job: str) -> StageStats: ...
def read_stage_stats(layout: WorkLayout, job: type[StageStats] | str) -> StageStats:
    """The stats the Spark job last wrote under ``layout``: by its stats type, or by its job's name."""
    kind = STATS_BY_JOB[job] if isinstance(job, str) else job
    return kind.read(layout.job_stats_path(kind.JOB))

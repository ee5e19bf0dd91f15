"""The evaluation report: one self-contained HTML page (inline PNG figures) plus ``report.json``.

Sections read what earlier stages wrote (fine-tuning curves and the publish gate, the latest ablation run,
satisfaction aggregates, the simulated experiment, the offline replay); an absent input shows the command
that produces it. The paper's claims are checked from the same numbers (``serendipity.eval.claims``); the
headline recall is the served (sibling-constrained) one, free-decoding recall stays as a diagnostic.
The sections' types live in ``serendipity.eval.report_data``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serendipity.config import PipelineConfig
from serendipity.eval.claims import check_claims
from serendipity.eval.replay_results import ReplayReport
from serendipity.eval.report_data import (
    AblationSection,
    AggregateRow,
    AggregatesSection,
    EvaluationReport,
    FinetuneSection,
    ReportData,
)
from serendipity.eval.report_html import interval_text, render_html
from serendipity.eval.results import ExperimentSummary
from serendipity.io import json_safe, write_text_atomic
from serendipity.layout import REPORT_HTML_FILE, REPORT_JSON_FILE, WorkLayout
from serendipity.mllm.results import FinetuneSummary


@dataclass(frozen=True)
class ReportPaths:
    html: Path
    json: Path


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON: {error}") from None


def _finetune(layout: WorkLayout) -> FinetuneSection | None:
    """The curves and (when fine-tuning wrote one) the ``FinetuneSummary``."""
    import pandas as pd

    curves_path = layout.finetune_curves_path
    if not curves_path.exists():
        return None
    curves = pd.read_csv(curves_path)
    missing = {"step", "loss"} - set(curves.columns)
    if missing:
        raise ValueError(f"{curves_path}: missing columns {sorted(missing)}")
    summary = None
    path = layout.finetune_summary_path
    if path.exists():
        try:
            summary = FinetuneSummary.read(path)
        except ValueError as error:
            raise ValueError(f"{path}: not a fine-tuning summary: {error}") from None
    return FinetuneSection(json_safe(curves.sort_values("step").to_dict(orient="list")), summary)


def _experiment(layout: WorkLayout) -> ExperimentSummary | None:
    """The simulated experiment's ``ExperimentSummary`` (None before the experiment has run)."""
    path = layout.experiment_path
    if not path.exists():
        return None
    try:
        return ExperimentSummary.read(path)
    except ValueError as error:
        raise ValueError(f"{path}: not an experiment summary: {error}") from None


def _replay(layout: WorkLayout) -> ReplayReport | None:
    """The offline replay's ``ReplayReport`` (None before the replay has run)."""
    path = layout.replay_path
    if not path.exists():
        return None
    try:
        return ReplayReport.read(path)
    except ValueError as error:
        raise ValueError(f"{path}: not a replay report: {error}") from None


def _aggregates(layout: WorkLayout, config: PipelineConfig) -> AggregatesSection | None:
    import pyarrow.parquet as pq

    path = layout.aggregates_overall_path
    if not path.exists():
        return None
    table = pq.read_table(path)
    needed = set(AggregateRow.model_fields)
    missing = needed - set(table.column_names)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    rows = json_safe(table.to_pandas().sort_values("pair_class").to_dict(orient="records"))
    return AggregatesSection(config.mining.level, [AggregateRow.model_validate(row) for row in rows])


def _ablation(layout: WorkLayout) -> AblationSection | None:
    path = layout.ablation_table_path
    if not path.exists():
        return None
    document = _read_json(path)
    try:
        return AblationSection.of(document)
    except ValueError as error:
        raise ValueError(f"{path}: not an ablation table: {error}") from None


def producing_commands(config_path: str, simulator: bool = True) -> dict[str, str]:
    """The command that writes each section's input (the experiment needs the synthetic world's simulator)."""
    experiment = f"python -m ray_jobs.evaluate --config {config_path}"
    return {
        "finetune": f"serendipity pipeline run --config {config_path} --stages finetune",
        "ablation": f"serendipity experiment ablate --config {config_path} --seeds 0,1,2",
        "aggregates": f"serendipity pipeline run --config {config_path} --stages validate,aggregates",
        "experiment": experiment
        if simulator
        else f"{experiment} (with a `world:` section: no simulator here)",
        "replay": f"serendipity experiment replay --config {config_path}",
    }


def build_report(config: PipelineConfig, config_path: str | Path | None = None) -> EvaluationReport:
    """Every section's data (None when its input is absent) and the checked claims."""
    layout = WorkLayout.of(config)
    data = ReportData(
        finetune=_finetune(layout),
        ablation=_ablation(layout),
        aggregates=_aggregates(layout, config),
        experiment=_experiment(layout),
        replay=_replay(layout),
    )
    sources = {
        "finetune": layout.finetune_curves_path,
        "ablation": layout.ablation_table_path,
        "aggregates": layout.aggregates_overall_path,
        "experiment": layout.experiment_path,
        "replay": layout.replay_path,
    }
    commands = producing_commands(str(config_path) if config_path else "CONFIG", config.world is not None)
    return EvaluationReport(
        name=config.name,
        work_dir=str(config.work_dir),
        data=data,
        sources=sources,
        commands=commands,
        claims=check_claims(data, commands),
    )


def headline_table(report: EvaluationReport) -> str:
    """Markdown: per arm, novelty gain %, positive-feedback change % and engaged users, with 95% CIs."""
    experiment = report.data.experiment
    if experiment is None:
        return f"Simulated experiment not run yet: `{report.commands['experiment']}`\n"
    lines = [
        "| arm | novelty gain % | positive-feedback change % | engaged users |",
        "|---|---|---|---|",
    ]
    for arm in experiment.arms:
        cells = [
            interval_text(experiment.stat("novelty_gain_pct", arm), 1),
            interval_text(experiment.stat("positive_feedback_change_pct", arm), 1),
            interval_text(experiment.stat("engaged_user_share", arm), 3),
        ]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(
    config: PipelineConfig, config_path: str | Path | None = None, out_dir: str | Path | None = None
) -> ReportPaths:
    """Build the report and write ``report.json`` and ``report.html`` (each atomically) to ``out_dir``."""
    layout = WorkLayout.of(config)
    out = Path(out_dir) if out_dir else layout.reports_dir
    report = build_report(config, config_path)
    json_path = report.write(out / REPORT_JSON_FILE)
    page = render_html(report, layout.ablation_dir)
    return ReportPaths(write_text_atomic(page, out / REPORT_HTML_FILE), json_path)

"""The evaluation report: one self-contained HTML page (inline PNG figures) plus ``report.json``.

Sections read what earlier stages wrote (fine-tuning curves and the publish gate, the latest ablation run,
satisfaction aggregates, the simulated experiment, the offline replay); an absent input shows the command
that produces it. The paper's claims are checked from the same numbers (``serendipity.eval.claims``); the
headline recall is the served (sibling-constrained) one, free-decoding recall stays as a diagnostic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serendipity.config import PipelineConfig
from serendipity.eval.claims import check_claims
from serendipity.eval.replay_results import ReplayReport
from serendipity.eval.report_html import interval_text, render_html
from serendipity.eval.results import ExperimentSummary
from serendipity.io import json_safe, write_json_atomic, write_text_atomic
from serendipity.layout import REPORT_HTML_FILE, REPORT_JSON_FILE, WorkLayout
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


@dataclass(frozen=True)
class ReportPaths:
    html: Path
    json: Path


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON: {error}") from None


def _optional_json(path: Path) -> dict[str, Any] | None:
    return _read_json(path) if path.exists() else None


def _finetune(layout: WorkLayout) -> dict[str, Any] | None:
    """The curves and (a ``FinetuneSummary``, when fine-tuning wrote one) ``summary``."""
    import pandas as pd

    curves_path = layout.finetune_curves_path
    if not curves_path.exists():
        return None
    curves = pd.read_csv(curves_path)
    missing = {"step", "loss"} - set(curves.columns)
    if missing:
        raise ValueError(f"{curves_path}: missing columns {sorted(missing)}")
    data: dict[str, Any] = {"curves": curves.sort_values("step").to_dict(orient="list")}
    path = layout.finetune_summary_path
    if path.exists():
        try:
            data["summary"] = FinetuneSummary.read(path)
        except ValueError as error:
            raise ValueError(f"{path}: not a fine-tuning summary: {error}") from None
    return data


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


def finetune_section_json(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """The finetune section as the report writes it: the summary's ``FINETUNE_FIELDS`` (None when absent)."""
    if data is None or data.get("summary") is None:
        return data
    shown = data["summary"].model_dump(include=set(FINETUNE_FIELDS), exclude_unset=True)
    return {**data, "summary": dict.fromkeys(FINETUNE_FIELDS) | shown}


def _aggregates(layout: WorkLayout, config: PipelineConfig) -> dict[str, Any] | None:
    import pyarrow.parquet as pq

    path = layout.aggregates_overall_path
    if not path.exists():
        return None
    table = pq.read_table(path)
    needed = {"pair_class", "count", "mean_satisfaction", "ci_low", "ci_high"}
    missing = needed - set(table.column_names)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    rows = table.to_pandas().sort_values("pair_class").to_dict(orient="records")
    return {"level": config.mining.level, "rows": rows}


def _ablation(layout: WorkLayout) -> dict[str, Any] | None:
    document = _optional_json(layout.ablation_table_path)
    if document is None:
        return None
    return {key: document.get(key) for key in ("settings", "table", "findings", "non_llm_baseline")}


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


def build_report(config: PipelineConfig, config_path: str | Path | None = None) -> dict[str, Any]:
    """Every section's numbers (``data`` is None when its input is absent) and the checked claims."""
    layout = WorkLayout.of(config)
    experiment, replay = _experiment(layout), _replay(layout)
    data: dict[str, Any] = {
        "finetune": _finetune(layout),
        "ablation": _ablation(layout),
        "aggregates": _aggregates(layout, config),
        "experiment": experiment,
        "replay": replay,
    }
    sources = {
        "finetune": layout.finetune_curves_path,
        "ablation": layout.ablation_table_path,
        "aggregates": layout.aggregates_overall_path,
        "experiment": layout.experiment_path,
        "replay": layout.replay_path,
    }
    commands = producing_commands(str(config_path) if config_path else "CONFIG", config.world is not None)
    claims = [check.as_dict() for check in check_claims(data, commands)]
    data["finetune"] = finetune_section_json(data["finetune"])
    data["experiment"] = experiment.to_json() if experiment is not None else None
    data["replay"] = replay.to_json() if replay is not None else None
    sections = {
        name: {
            "title": title,
            "present": data[name] is not None,
            "source": str(sources[name]),
            "command": commands[name],
            "data": data[name],
        }
        for name, title in SECTION_TITLES.items()
    }
    return json_safe(
        {"name": config.name, "work_dir": str(config.work_dir), "sections": sections, "claims": claims}
    )


def headline_table(report: dict[str, Any]) -> str:
    """Markdown: per arm, novelty gain %, positive-feedback change % and engaged users, with 95% CIs."""
    section = report["sections"]["experiment"]
    if not section["data"]:
        return f"Simulated experiment not run yet: `{section['command']}`\n"
    experiment = ExperimentSummary.model_validate(section["data"])
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
    json_path = write_json_atomic(report, out / REPORT_JSON_FILE)
    page = render_html(report, layout.ablation_dir)
    return ReportPaths(write_text_atomic(page, out / REPORT_HTML_FILE), json_path)

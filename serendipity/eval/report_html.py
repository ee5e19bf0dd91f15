"""The report's HTML page: the claims table, then one block per section with inline PNG figures."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

from serendipity.eval.claims import ablation_provenance
from serendipity.eval.replay_results import ReplayReport
from serendipity.eval.report_data import (
    SECTION_TITLES,
    AblationRow,
    AblationSection,
    AggregatesSection,
    EvaluationReport,
    FinetuneSection,
)
from serendipity.eval.results import ExperimentSummary, Statistic
from serendipity.mllm.results import GateDecision, RecallFigures, Validation

STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:90%}"
    ".missing{color:#a60}.holds{color:#080}.does-not-hold{color:#c00}.inconclusive{color:#a60}"
    ".not-measured{color:#888}code{background:#f4f4f4;padding:1px 4px}"
)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _image(encoded: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def interval_text(stats: Statistic | None, digits: int) -> str:
    if stats is None or stats.mean is None:
        return "-"
    text = f"{stats.mean:.{digits}f}"
    if stats.ci_low is None or stats.ci_high is None:
        return text
    return f"{text} [{stats.ci_low:.{digits}f}, {stats.ci_high:.{digits}f}]"


def _number(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _gate_html(gate: GateDecision) -> str:
    rows = [
        ["candidate (served if published)", gate.n, interval_text(_as_interval(gate.candidate), 3), "", ""]
    ]
    for name, figures in gate.references.items():
        paired = gate.comparisons.get(name)
        if paired is not None and paired.model_fields_set:
            low, high = paired.difference_ci_low, paired.difference_ci_high
            difference, p_value = (
                f"{paired.difference:+.3f} [{low:+.3f}, {high:+.3f}]",
                f"{paired.p_value:.3g}",
            )
        else:
            difference, p_value = "-", "-"
        rows.append([name, figures.items, interval_text(_as_interval(figures), 3), difference, p_value])
    worse = ", ".join(gate.worse_than) or "none"
    warning = (
        f"<p class=missing>only {gate.n} validation items (fewer than 200): the recalls are noisy</p>"
        if gate.small_sample
        else ""
    )
    return (
        f"<p>publish gate ({html.escape(str(gate.rule))}, margin {gate.margin}): "
        f"<b>{html.escape(str(gate.decision))}</b>; worse than: {html.escape(worse)}; "
        f"serving {html.escape(str(gate.served_model_version))}</p>"
        + warning
        + _table(
            [
                "recall on the validation items",
                "n",
                "mean [Wilson 95%]",
                "candidate - reference [paired 95%]",
                "exact McNemar p",
            ],
            rows,
        )
    )


def _nominators_html(validation: Validation) -> str:
    rows = [[name, f.items, interval_text(_as_interval(f), 3)] for name, f in validation.nominators.items()]
    for group, evidence in validation.by_evidence.items():
        rows += [
            [f"{name} ({group} context items)", f.items, interval_text(_as_interval(f), 3)]
            for name, f in evidence.nominators.items()
        ]
    return _table(["nominator on the validation items", "n", "recall [Wilson 95%]"], rows)


def _as_interval(figures: RecallFigures | None) -> Statistic | None:
    if figures is None or not figures.model_fields_set:
        return None
    return Statistic(mean=figures.recall, ci_low=figures.ci_low, ci_high=figures.ci_high)


def _served_rows(served: RecallFigures | None) -> list[list[str]]:
    """The served nominator's figures (earlier runs' summaries kept an evaluation row with more of them)."""
    if served is None:
        return []
    figures = {
        "match_rate": served.extra_metric("match_rate"),
        "recall": served.recall,
        "recall_at_k": served.extra_metric("recall_at_k"),
    }
    shown = served.model_fields_set | set(served.model_extra or {})
    return [[f"served nomination {k}", _number(value)] for k, value in figures.items() if k in shown]


def _finetune_html(section: FinetuneSection) -> str:
    from serendipity.eval.report_plots import curves_png

    parts = [_image(curves_png(section.curves), "fine-tuning curves")]
    summary = section.summary
    if summary is not None:
        final = summary.final_metrics or {}  # the last evaluation row of training
        keys = ("match_rate", "recall", "recall_at_k")
        rows = _served_rows(summary.served_metrics)
        rows += [[f"free decoding {k} (diagnostic)", _number(final.get(k))] for k in keys if k in final]
        baseline = summary.non_llm_baseline.recall if summary.non_llm_baseline else None
        rows.append(["non-LLM best sibling guess recall", _number(baseline)])
        parts.append(f"<p>model {summary.model_version}, {summary.steps} steps</p>")
        parts.append(_table(["final metric", "value"], rows))
        if summary.gate is not None and summary.gate.model_fields_set:
            parts.append(_gate_html(summary.gate))
        if summary.validation is not None and summary.validation.model_fields_set:
            parts.append(_nominators_html(summary.validation))
    return "".join(parts)


def _ablation_html(ablation: AblationSection, ablation_dir: Path) -> str:
    from serendipity.eval.report_plots import png_file_base64

    def cell(row: AblationRow, metric: str, digits: int) -> str:
        mean, half = row.figure(metric)
        return (
            "-" if mean is None else _number(mean, digits) + ("" if half is None else f" ± {half:.{digits}f}")
        )

    rows = [
        [r.experiment, r.arm, r.seeds or "-", cell(r, "final_match_rate", 3),
         cell(r, "final_recall", 3), cell(r, "best_recall", 3), cell(r, "steps_to_90pct_match", 0)]
        for r in ablation.table or []
    ]  # fmt: skip
    header = ["experiment", "arm", "seeds", "final match", "final recall", "best recall", "steps@90% match"]
    found = "".join(
        f"<li><b>{html.escape(f.finding)}</b>: {html.escape(f.verdict)} ({html.escape(f.evidence)})</li>"
        for f in ablation.findings or []
    )
    images = [_image(png_file_base64(p), p.stem) for p in sorted(ablation_dir.glob("curves_*.png"))]
    provenance = f"<p>{html.escape(ablation_provenance(ablation))}</p>"
    return provenance + _table(header, rows) + f"<ul>{found}</ul>" + "".join(images)


def _aggregates_html(aggregates: AggregatesSection) -> str:
    from serendipity.eval.report_plots import aggregates_png

    rows = [
        [r.pair_class, r.count, _number(r.mean_satisfaction, 4),
         f"[{_number(r.ci_low, 4)}, {_number(r.ci_high, 4)}]"]
        for r in aggregates.rows
    ]  # fmt: skip
    level = aggregates.level
    note = f"<p>pair classes at level L={level}: serendipitous = different cluster at L, same at L-1.</p>"
    return (
        note
        + _table(["class", "pairs", "mean satisfaction", "95% CI"], rows)
        + _image(aggregates_png(aggregates.rows), "satisfaction by pair class")
    )


def _experiment_html(experiment: ExperimentSummary) -> str:
    from serendipity.eval.report_plots import figure6_png, figure7_png, figure8_png

    arms = experiment.arms
    shown = {"seeds": experiment.seeds, "days": experiment.days, "users_per_arm": experiment.users_per_arm,
             "slate_size": experiment.slate_size}  # fmt: skip
    settings = ", ".join(f"{name} {value}" for name, value in shown.items())
    rows = [
        [metric, *(interval_text(values.get(arm), 3) for arm in arms), experiment.metric_help.get(metric, "")]
        for metric, values in experiment.metrics.items()
    ]
    parts = [
        f"<p>{html.escape(settings)}; reference arm {html.escape(experiment.reference_arm or '')}; "
        "mean [95% CI] over seeds.</p>",
        _image(figure6_png(experiment), "Figure 6"),
        _table(["metric", *arms, "definition"], rows),
        _image(figure7_png(experiment), "Figure 7"),
    ]
    buckets = experiment.sorted_buckets()
    if buckets:
        bucket_rows = [
            [b.bucket, f"{_number(b.richness_low, 2)}-{_number(b.richness_high, 2)}",
             interval_text(b.mllm_positive_ratio, 3), interval_text(b.other_positive_ratio, 3),
             interval_text(b.relative_gain_pct, 1)]
            for b in buckets
        ]  # fmt: skip
        header = ["bucket", "richness", "MLLM positive ratio", "other positive ratio", "relative gain %"]
        parts += [_image(figure8_png(buckets), "Figure 8"), _table(header, bucket_rows)]
    return "".join(parts)


def _replay_html(replay: ReplayReport) -> str:
    from serendipity.eval.report_plots import replay_png

    parts = [f"<p>{html.escape(replay.protocol or '')}</p>"]
    for subset, content in replay.subsets.items():
        rows = [
            [name, m.hits, content.cases, interval_text(m.statistic(), 3), replay.method_help.get(name, "")]
            for name, m in content.methods.items()
        ]
        parts.append(f"<h3>{html.escape(subset)}: {content.cases} held-out next items</h3>")
        parts.append(_table(["method", "hits", "cases", "hit rate [95% CI]", "definition"], rows))
        if content.cases:
            parts.append(_image(replay_png(content.methods), f"replay {subset}"))
    return "".join(parts)


def render_html(report: EvaluationReport, ablation_dir: Path) -> str:
    """The whole page: the claims table first, then one block per section."""
    claims = "".join(
        f"<tr><td>{html.escape(c.claim_id)}</td><td>{html.escape(c.claim)}</td>"
        f'<td class="{c.status.replace(" ", "-")}">{html.escape(c.status)}</td>'
        f"<td>{html.escape(c.evidence)}</td></tr>"
        for c in report.claims
    )
    blocks = [
        f"<h1>Serendipity evaluation report: {html.escape(report.name)}</h1>",
        f"<p>work dir <code>{html.escape(report.work_dir)}</code></p>",
        "<h2>The paper's claims, checked here</h2>",
        f"<table><tr><th>#</th><th>claim</th><th>status</th><th>evidence</th></tr>{claims}</table>",
    ]
    renderers: dict[str, Callable[[Any], str]] = {
        "finetune": _finetune_html,
        "ablation": lambda ablation: _ablation_html(ablation, ablation_dir),
        "aggregates": _aggregates_html,
        "experiment": _experiment_html,
        "replay": _replay_html,
    }
    for name, title in SECTION_TITLES.items():
        blocks.append(f"<h2>{html.escape(title)}</h2>")
        data = report.data.section(name)
        if data is None:
            command = report.commands[name]
            blocks.append(f'<p class="missing">not run yet: <code>{html.escape(command)}</code></p>')
        else:
            blocks.append(renderers[name](data))
            source = str(report.sources[name])
            blocks.append(f"<p><small>source: <code>{html.escape(source)}</code></small></p>")
    body = "\n".join(blocks)
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(report.name)} report'
        f"</title><style>{STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )

"""The paper's claims, checked against the numbers of the report's sections (never hard-coded verdicts).

Every check compares 95% intervals: a claim *holds* when the intervals separate in its favour, *does not
hold* when they separate against it, is *inconclusive* when they overlap (or are undefined) and *not
measured* when the section it needs has not run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from serendipity.eval.replay_results import ReplayReport
from serendipity.eval.report_data import (
    AblationSection,
    AblationSettings,
    AggregatesSection,
    ClaimCheck,
    FinetuneSection,
    ReportData,
)
from serendipity.eval.results import ExperimentSummary, Statistic
from serendipity.intervals import wilson_interval
from serendipity.mllm.results import FinetuneSummary, GateDecision, RecallFigures

HOLDS = "holds"
FAILS = "does not hold"
INCONCLUSIVE = "inconclusive"
NOT_MEASURED = "not measured"
REFERENCE_ARM = "exploitation"
MLLM_ARM = "mllm"
EXPLORATION_ARMS = ("exploration", "bandit")


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float

    @property
    def defined(self) -> bool:
        return not any(math.isnan(v) for v in (self.mean, self.low, self.high))

    def text(self, digits: int = 3) -> str:
        if math.isnan(self.mean):
            return "-"
        if math.isnan(self.low) or math.isnan(self.high):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def interval_of(stats: Statistic | Mapping[str, Any]) -> Interval:
    """An interval from a ``Statistic`` (or its JSON, ``{"mean", "ci_low", "ci_high"}``); missing or null
    bounds are NaN."""
    stat = stats if isinstance(stats, Statistic) else Statistic.model_validate(stats)
    return Interval(_number(stat.mean), _number(stat.ci_low), _number(stat.ci_high))


def compare(better: Interval, worse: Interval) -> str:
    """Whether ``better`` is above ``worse``: separated intervals decide, overlapping ones do not."""
    if not (better.defined and worse.defined):
        return INCONCLUSIVE
    if better.low > worse.high:
        return HOLDS
    if better.high < worse.low:
        return FAILS
    return INCONCLUSIVE


def combine(statuses: Sequence[str]) -> str:
    """All parts must hold; any failing part fails the claim; otherwise it stays inconclusive."""
    if not statuses:
        return NOT_MEASURED
    if FAILS in statuses:
        return FAILS
    return HOLDS if all(s == HOLDS for s in statuses) else INCONCLUSIVE


def _arm_metric(experiment: ExperimentSummary | None, metric: str, arm: str) -> Interval | None:
    stats = experiment.stat(metric, arm) if experiment is not None else None
    return interval_of(stats) if stats is not None and stats.model_fields_set else None


def _not_measured(claim_id: str, claim: str, source: str, needs: str) -> ClaimCheck:
    return ClaimCheck(claim_id, claim, NOT_MEASURED, f"needs {needs}", source)


def serendipitous_satisfy_more(aggregates: AggregatesSection | None) -> ClaimCheck:
    claim = "serendipitous next items satisfy more than similar ones"
    rows = {row.pair_class: row for row in (aggregates.rows if aggregates is not None else [])}
    if "serendipitous" not in rows or "similar" not in rows:
        return _not_measured("1", claim, "aggregates", "the aggregates table with both pair classes")
    ser, sim = (
        Interval(_number(r.mean_satisfaction), _number(r.ci_low), _number(r.ci_high))
        for r in (rows["serendipitous"], rows["similar"])
    )
    evidence = f"mean satisfaction serendipitous {ser.text(4)} vs similar {sim.text(4)}"
    return ClaimCheck("1", claim, compare(ser, sim), evidence, "aggregates")


def mllm_highest_novelty(experiment: ExperimentSummary | None) -> ClaimCheck:
    claim = "the MLLM arm has the highest novelty gain among the arms"
    metric = "novelty_gain_pct"
    if experiment is None or _arm_metric(experiment, metric, MLLM_ARM) is None:
        return _not_measured("2", claim, "experiment", f"the simulated experiment ({metric} of the mllm arm)")
    mllm = _arm_metric(experiment, metric, MLLM_ARM)
    diagnostic = set(experiment.extra_arms)  # e.g. exploration_novel: novel by construction
    others = {
        arm: _arm_metric(experiment, metric, arm)
        for arm in experiment.arms
        if arm != MLLM_ARM and arm not in diagnostic
    }
    measured = {arm: value for arm, value in others.items() if value is not None}
    statuses = [compare(mllm, value) for value in measured.values()]
    shown = ", ".join(f"{arm} {value.text(1)}" for arm, value in measured.items())
    return ClaimCheck("2", claim, combine(statuses), f"{metric}: mllm {mllm.text(1)}; {shown}", "experiment")


def mllm_better_feedback_than_exploration(experiment: ExperimentSummary | None) -> ClaimCheck:
    claim = "the MLLM arm's positive feedback beats the exploration arms' (exploration, bandit)"
    metric = "positive_feedback_ratio"
    arms = [MLLM_ARM, *EXPLORATION_ARMS]
    values = {arm: _arm_metric(experiment, metric, arm) for arm in arms} if experiment is not None else {}
    if not values or any(value is None for value in values.values()):
        return _not_measured("3", claim, "experiment", f"{metric} of arms {', '.join(arms)}")
    statuses = [compare(values[MLLM_ARM], values[arm]) for arm in EXPLORATION_ARMS]
    shown = "; ".join(f"{arm} {values[arm].text(3)}" for arm in arms)
    return ClaimCheck("3", claim, combine(statuses), f"{metric}: {shown}", "experiment")


def mllm_raises_engagement(experiment: ExperimentSummary | None) -> ClaimCheck:
    claim = "the MLLM arm raises engagement (engaged user share, unique engaged pairs) vs exploitation"
    reference = (experiment.reference_arm if experiment is not None else None) or REFERENCE_ARM
    parts, statuses = [], []
    for metric in ("engaged_user_share", "unique_engaged_pairs"):
        mllm = _arm_metric(experiment, metric, MLLM_ARM)
        base = _arm_metric(experiment, metric, reference)
        if mllm is None or base is None:
            continue
        statuses.append(compare(mllm, base))
        parts.append(f"{metric}: mllm {mllm.text(3)} vs {reference} {base.text(3)}")
    if not statuses:
        return _not_measured("4", claim, "experiment", "engagement metrics of the mllm and reference arms")
    return ClaimCheck("4", claim, combine(statuses), "; ".join(parts), "experiment")


def gain_grows_with_richness(experiment: ExperimentSummary | None) -> ClaimCheck:
    claim = "the MLLM's gain is larger for visually richer context items"
    buckets = experiment.sorted_buckets() if experiment is not None else []
    if len(buckets) < 2:
        return _not_measured("5", claim, "experiment", "at least two visual-richness buckets")
    gains = [interval_of(bucket.relative_gain_pct or Statistic()) for bucket in buckets]
    means = [gain.mean for gain in gains]
    rising = sum(b > a for a, b in zip(means, means[1:], strict=False))
    evidence = (
        f"relative gain % from the poorest to the richest bucket: {', '.join(g.text(1) for g in gains)}; "
        f"{rising} of {len(means) - 1} steps rise; rule: the richest bucket's interval above the poorest's"
    )
    return ClaimCheck("5", claim, compare(gains[-1], gains[0]), evidence, "experiment")


def _ablation_arm(ablation: AblationSection | None, arm: str) -> Interval | None:
    row = ablation.rows().get(arm) if ablation is not None else None
    mean, half = row.figure("final_recall") if row is not None else (None, None)
    if mean is None:
        return None
    return Interval(mean, mean - _number(half), mean + _number(half))


def ablation_provenance(ablation: AblationSection | None) -> str:
    """Which ablation run the figures come from: its command, seeds, steps and when it finished."""
    settings = (ablation.settings if ablation is not None else None) or AblationSettings()
    command = settings.command
    ran = f"`{command}`" if command else "an ablation run that recorded no command"
    finished = f", finished {settings.finished}" if settings.finished else ""
    return f"from {ran} (seeds {settings.seeds}, {settings.max_steps} steps{finished})"


def ablation_claims(ablation: AblationSection | None) -> list[ClaimCheck]:
    """Video + text beats text alone, CoT helps, thumbnail beats a random frame, more frames help."""
    comparisons = [
        ("6a", "video + text beats text alone (final recall)", "video_text-4f", "text"),
        ("6c", "a thumbnail beats a random frame (final recall)", "thumbnail_cot", "frame_cot"),
        ("6d", "more frames help: 4 frames beat 1 (final recall, CoT)", "video_cot-4f", "video_cot-1f"),
    ]
    provenance = ablation_provenance(ablation)
    checks = []
    for claim_id, claim, better, worse in comparisons:
        a, b = _ablation_arm(ablation, better), _ablation_arm(ablation, worse)
        if a is None or b is None:
            checks.append(_not_measured(claim_id, claim, "ablation", f"ablation arms {better} and {worse}"))
            continue
        evidence = f"{better} {a.text(3)} vs {worse} {b.text(3)} (mean and 95% CI over seeds)"
        status = compare(a, b) if a.defined and b.defined else INCONCLUSIVE
        if not (a.defined and b.defined):
            evidence += "; one seed: no interval"
        checks.append(ClaimCheck(claim_id, claim, status, f"{evidence}; {provenance}", "ablation"))
    cot_claim = "chain-of-thought helps (reaches a high match rate sooner)"
    findings = (ablation.findings if ablation is not None else None) or []
    found = [f for f in findings if "CoT" in f.finding]
    if not found or found[0].verdict not in (HOLDS, FAILS, INCONCLUSIVE):
        checks.insert(
            1, _not_measured("6b", cot_claim, "ablation", "the modality experiment of the ablation")
        )
    else:
        evidence = f"{found[0].evidence}; {provenance}"
        checks.insert(1, ClaimCheck("6b", cot_claim, found[0].verdict, evidence, "ablation"))
    return checks


def _gate_text(gate: GateDecision | None) -> str:
    if gate is None or not gate.model_fields_set:
        return ""
    worse = ", ".join(gate.worse_than) or "no reference"
    small = f"; WARNING: only {gate.n} validation items" if gate.small_sample else ""
    return (
        f"; publish gate ({gate.rule}, margin {gate.margin}): {gate.decision}, "
        f"worse than {worse}, serving {gate.served_model_version}{small}"
    )


def _wilson(figures: RecallFigures, recall: float) -> Interval:
    trials = figures.items or 0
    low, high = wilson_interval(recall * trials, trials)
    return Interval(recall, low, high)


def finetuned_beats_baseline(finetune: FinetuneSection | None) -> ClaimCheck:
    """Claim 7 from the finetune section's ``FinetuneSummary`` (absent before fine-tuning)."""
    claim = "the served nomination's validation recall beats the non-LLM baseline"
    summary = (finetune.summary if finetune is not None else None) or FinetuneSummary()
    served, baseline = summary.served_metrics, summary.non_llm_baseline
    if served is None or served.recall is None or baseline is None or baseline.recall is None:
        needs = "the fine-tuning summary with the served (constrained) recall and the non-LLM baseline"
        return _not_measured("7", claim, "finetune", needs)
    mllm, base = _wilson(served, served.recall), _wilson(baseline, baseline.recall)
    free = (summary.final_metrics or {}).get("recall")  # the last evaluation row of training
    evidence = (
        f"served recall on n={served.items or 0} validation items: served {mllm.text(3)} vs best "
        f"non-LLM sibling guess {base.text(3)} (Wilson 95%); free-decoding recall "
        f"{'-' if free is None else f'{float(free):.3f}'} (diagnostic, not served)"
    )
    return ClaimCheck("7", claim, compare(mllm, base), evidence + _gate_text(summary.gate), "finetune")


def replay_mllm_beats_baseline(replay: ReplayReport | None) -> ClaimCheck:
    claim = "on real next items, the MLLM's cluster is hit more often than the non-LLM baseline's"
    everything = replay.subsets.get("all") if replay is not None else None
    if replay is None or everything is None or not {"mllm", "non_llm_frequent"} <= everything.methods.keys():
        return _not_measured("8", claim, "replay", "the offline replay")
    methods = everything.methods
    mllm, base = (interval_of(methods[m].statistic()) for m in ("mllm", "non_llm_frequent"))
    random = interval_of(methods["random_sibling"].statistic()) if "random_sibling" in methods else None
    evidence = f"hit rate on {everything.cases} held-out next items: mllm {mllm.text(3)} vs non-LLM "
    evidence += f"{base.text(3)}" + (f" (random sibling {random.text(3)})" if random else "")
    if replay.served_model_versions:
        evidence += f"; served cluster from {', '.join(replay.served_model_versions)}"
    return ClaimCheck("8", claim, compare(mllm, base), evidence, "replay")


def _with_command(check: ClaimCheck, commands: Mapping[str, str]) -> ClaimCheck:
    """A not-measured claim names the command that measures it."""
    if check.status != NOT_MEASURED or check.source not in commands:
        return check
    return replace(check, evidence=f"{check.evidence}; measure it with `{commands[check.source]}`")


def check_claims(data: ReportData, commands: Mapping[str, str] | None = None) -> list[ClaimCheck]:
    """Every claim, in the paper's order, from the report's section data (``None`` for an absent one).

    ``commands`` (section name -> the command that writes its input) completes not-measured evidence.
    """
    experiment = data.experiment
    checks = [
        serendipitous_satisfy_more(data.aggregates),
        mllm_highest_novelty(experiment),
        mllm_better_feedback_than_exploration(experiment),
        mllm_raises_engagement(experiment),
        gain_grows_with_richness(experiment),
        *ablation_claims(data.ablation),
        finetuned_beats_baseline(data.finetune),
        replay_mllm_beats_baseline(data.replay),
    ]
    return [_with_command(check, commands or {}) for check in checks]

"""The evaluation report: sections from real-format inputs, missing inputs, claims that follow the numbers."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from serendipity.config import PipelineConfig, load_config
from serendipity.eval import claims
from serendipity.eval.report import build_report, headline_table, write_report
from serendipity.eval.report_data import EvaluationReport
from serendipity.io import write_json_atomic, write_parquet_atomic
from serendipity.layout import WorkLayout
from serendipity.mllm.ablation_report import build_report as build_ablation_report
from serendipity.mllm.curves import write_curves
from spark_jobs.mining import OVERALL_RATES_SCHEMA

ARMS = ["exploitation", "exploration", "bandit", "mllm"]
SECTIONS = ("finetune", "ablation", "aggregates", "experiment", "replay")
ABLATION_COMMAND = "serendipity experiment ablate --config my.yaml --seeds 0,1 --max-steps 20"


def _stats(mean: float, half: float) -> dict[str, Any]:
    return {
        "mean": mean,
        "ci_low": mean - half,
        "ci_high": mean + half,
        "per_seed": [mean - half, mean, mean],
    }


def experiment_document() -> dict[str, Any]:
    """An experiment.json in evalsim's schema where the MLLM arm wins everything clearly."""
    per_arm = {
        "novel_impression_ratio": [0.10, 0.20, 0.18, 0.30],
        "novelty_gain_pct": [0.0, 100.0, 80.0, 200.0],
        "positive_feedback_ratio": [0.50, 0.30, 0.32, 0.45],
        "positive_feedback_change_pct": [0.0, -40.0, -36.0, -10.0],
        "engaged_user_share": [0.40, 0.38, 0.39, 0.55],
        "unique_engaged_pairs": [300.0, 280.0, 290.0, 420.0],
        "cluster_novelty": [0.1, 0.3, 0.25, 0.4],
        "novelty": [1.0, 2.0, 1.8, 2.2],
        "serendipity": [0.05, 0.08, 0.07, 0.15],
        "intra_list_diversity": [0.2, 0.5, 0.4, 0.45],
        "coverage": [0.3, 0.6, 0.5, 0.55],
    }
    metrics = {
        metric: {
            arm: _stats(value, abs(value) * 0.02 + 0.001) for arm, value in zip(ARMS, values, strict=True)
        }
        for metric, values in per_arm.items()
    }
    buckets = [
        {
            "bucket": index,
            "richness_low": index / 3,
            "richness_high": (index + 1) / 3,
            "mllm_positive_ratio": _stats(0.4 + 0.1 * index, 0.01),
            "other_positive_ratio": _stats(0.4, 0.01),
            "relative_gain_pct": _stats(gain, 2.0),
        }
        for index, gain in enumerate([1.0, 12.0, 30.0])
    ]
    return {
        "reference_arm": "exploitation",
        "arms": ARMS,
        "seeds": [0, 1, 2],
        "days": 3,
        "users_per_arm": 100,
        "slate_size": 10,
        "metrics": metrics,
        "richness_buckets": buckets,
        "metric_help": {metric: f"definition of {metric}" for metric in per_arm},
    }


def replay_document() -> dict[str, Any]:
    methods = {
        "mllm": {"hits": 40, "mean": 0.4, "ci_low": 0.31, "ci_high": 0.5},
        "exploitation_top1": {"hits": 10, "mean": 0.1, "ci_low": 0.05, "ci_high": 0.17},
        "non_llm_frequent": {"hits": 15, "mean": 0.15, "ci_low": 0.09, "ci_high": 0.23},
        "random_sibling": {"hits": 20.0, "mean": 0.2, "ci_low": 0.13, "ci_high": 0.27},
    }
    return {"protocol": "test replay", "subsets": {"all": {"cases": 100, "methods": methods}}}


def _ablation_histories() -> pd.DataFrame:
    """Histories of every ablation arm over two seeds: thumbnails, more frames and video + text all win."""
    final_recall = {
        "text": 0.10,
        "video-4f": 0.30,
        "video_text-4f": 0.25,
        "video_cot-4f": 0.35,
        "video_cot-1f": 0.15,
        "video_cot-2f": 0.25,
        "video_cot-8f": 0.36,
        "thumbnail_cot": 0.40,
        "frame_cot": 0.20,
    }
    rows = []
    for arm, recall in final_recall.items():
        for seed, jitter in ((0, -0.002), (1, 0.002)):
            for step, share in ((10, 0.5), (20, 1.0)):
                match = 0.9 * share if arm == "video_cot-4f" or share == 1.0 else 0.2
                rows.append(
                    {"arm": arm, "seed": seed, "step": step, "loss": 1.0 / step, "match_rate": match,
                     "recall": recall * share + jitter}
                )  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture()
def config(tmp_path: Path, repo_root: Path) -> PipelineConfig:
    return load_config(
        repo_root / "configs" / "test.yaml",
        overrides={"dataset_dir": str(tmp_path / "dataset"), "work_dir": str(tmp_path / "work")},
    )


@pytest.fixture()
def full_inputs(config: PipelineConfig) -> PipelineConfig:
    """Every section's input, each written by the code that writes it in the pipeline (or in its schema)."""
    from serendipity.mllm.ablation import paper_experiments

    layout = WorkLayout.of(config)
    history = [
        {"step": 10, "loss": 2.0, "items": 50, "match_rate": 0.5, "recall": 0.2, "recall_at_k": 0.3, "k": 3},
        {"step": 20, "loss": 1.0, "items": 50, "match_rate": 0.9, "recall": 0.6, "recall_at_k": 0.7, "k": 3},
    ]
    write_curves(history, layout.finetune_dir)
    summary = {"steps": 20, "model_version": "v1", "final_metrics": history[-1]}
    baseline = {"items": 50, "recall": 0.1}
    write_json_atomic(
        {**summary, "served_metrics": history[-1], "non_llm_baseline": baseline}, layout.finetune_summary_path
    )
    aggregates = pd.DataFrame(
        {
            "pair_class": ["distant", "serendipitous", "similar"],
            "count": [100, 200, 300],
            "mean_satisfaction": [0.3, 0.6, 0.5],
            "std_satisfaction": [0.1, 0.1, 0.1],
            "ci_low": [0.28, 0.58, 0.49],
            "ci_high": [0.32, 0.62, 0.51],
        }
    )
    write_parquet_atomic(
        pa.Table.from_pandas(aggregates, schema=OVERALL_RATES_SCHEMA, preserve_index=False),
        layout.aggregates_overall_path,
    )
    experiments = [(e.name, e.title, [a.name for a in e.arms]) for e in paper_experiments().values()]
    build_ablation_report(
        layout.ablation_dir,
        experiments=experiments,
        histories=_ablation_histories(),
        baseline={"items": 50, "recall": 0.1},
        settings={"seeds": [0, 1], "max_steps": 20, "eval_every": 10, "command": ABLATION_COMMAND},
    )
    write_json_atomic(experiment_document(), layout.experiment_path)
    write_json_atomic(replay_document(), layout.replay_path)
    return config


def _status(report: EvaluationReport, claim_id: str) -> str:
    return next(c.status for c in report.claims if c.claim_id == claim_id)


def test_missing_inputs_show_the_command_that_produces_them(config: PipelineConfig) -> None:
    paths = write_report(config, config_path="my.yaml")
    page = paths.html.read_text()
    report = json.loads(paths.json.read_text())
    assert page.count("not run yet") == len(SECTIONS)
    for name in SECTIONS:
        assert report["sections"][name]["data"] is None
        assert report["sections"][name]["command"] in page
    assert "serendipity experiment replay --config my.yaml" in page
    assert {c["status"] for c in report["claims"]} == {claims.NOT_MEASURED}
    assert "not run yet" in headline_table(build_report(config, "my.yaml"))


def test_every_section_is_rendered_self_contained(full_inputs: PipelineConfig) -> None:
    paths = write_report(full_inputs)
    page = paths.html.read_text()
    report = json.loads(paths.json.read_text())
    assert paths.html.parent == WorkLayout.of(full_inputs).reports_dir
    assert "not run yet" not in page
    assert all(report["sections"][name]["present"] for name in SECTIONS)
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)  # no external assets
    # curves, aggregates, figures 6/7/8, replay, plus the ablation's three curve figures
    assert page.count("data:image/png;base64,") == 9
    assert report["sections"]["finetune"]["data"]["curves"]["recall"] == [0.2, 0.6]
    assert [r["pair_class"] for r in report["sections"]["aggregates"]["data"]["rows"]] == [
        "distant",
        "serendipitous",
        "similar",
    ]
    assert "definition of coverage" in page and "thumbnail_cot" in page
    assert {c["status"] for c in report["claims"]} == {claims.HOLDS}
    assert [c["claim_id"] for c in report["claims"]] == [
        "1",
        "2",
        "3",
        "4",
        "5",
        "6a",
        "6b",
        "6c",
        "6d",
        "7",
        "8",
    ]


def test_rerun_is_idempotent_and_out_dir_is_honoured(full_inputs: PipelineConfig, tmp_path: Path) -> None:
    first = write_report(full_inputs).json.read_text()
    assert write_report(full_inputs).json.read_text() == first
    elsewhere = write_report(full_inputs, out_dir=tmp_path / "elsewhere")
    assert elsewhere.html.exists() and json.loads(elsewhere.json.read_text()) == json.loads(first)


def test_report_json_holds_each_input_as_it_was_written(full_inputs: PipelineConfig) -> None:
    """The typed sections write what the untyped report wrote: each input's own keys and values."""
    layout = WorkLayout.of(full_inputs)
    sections = build_report(full_inputs).to_json()["sections"]
    assert sections["replay"]["data"] == replay_document()
    assert sections["experiment"]["data"] == experiment_document()
    ablation = json.loads(layout.ablation_table_path.read_text())
    assert sections["ablation"]["data"] == {
        key: ablation[key] for key in ("settings", "table", "findings", "non_llm_baseline")
    }
    rows = pd.read_parquet(layout.aggregates_overall_path).to_dict(orient="records")
    assert sections["aggregates"]["data"] == {"level": full_inputs.mining.level, "rows": rows}
    summary = sections["finetune"]["data"]["summary"]
    assert summary["served_metrics"]["recall"] == 0.6 and summary["gate"] is None


def test_headline_table_lists_every_arm_with_intervals(full_inputs: PipelineConfig) -> None:
    table = headline_table(build_report(full_inputs))
    lines = table.strip().splitlines()
    assert lines[0].startswith("| arm | novelty gain %")
    assert [line.split("|")[1].strip() for line in lines[2:]] == ARMS
    assert "| mllm | 200.0 [196.0, 204.0] | -10.0 [-10.2, -9.8] | 0.550 [0.538, 0.562] |" in table


def _rewrite_experiment(config: PipelineConfig, change) -> None:
    document = experiment_document()
    change(document)
    write_json_atomic(document, WorkLayout.of(config).experiment_path)


def _set(document: dict, metric: str, arm: str, mean: float, half: float) -> None:
    document["metrics"][metric][arm] = _stats(mean, half)


@pytest.mark.parametrize(
    ("claim_id", "change", "expected"),
    [
        ("2", lambda d: _set(d, "novelty_gain_pct", "bandit", 300.0, 5.0), claims.FAILS),
        ("2", lambda d: _set(d, "novelty_gain_pct", "bandit", 199.0, 5.0), claims.INCONCLUSIVE),
        ("3", lambda d: _set(d, "positive_feedback_ratio", "mllm", 0.2, 0.01), claims.FAILS),
        ("3", lambda d: _set(d, "positive_feedback_ratio", "mllm", 0.31, 0.02), claims.INCONCLUSIVE),
        ("4", lambda d: _set(d, "engaged_user_share", "mllm", 0.2, 0.01), claims.FAILS),
        ("4", lambda d: _set(d, "unique_engaged_pairs", "mllm", 301.0, 10.0), claims.INCONCLUSIVE),
        ("5", lambda d: d["richness_buckets"][2].update(relative_gain_pct=_stats(-20.0, 1.0)), claims.FAILS),
        ("5", lambda d: d["richness_buckets"][2].update(relative_gain_pct=_stats(2, 5)), claims.INCONCLUSIVE),
        ("5", lambda d: d.update(richness_buckets=[]), claims.NOT_MEASURED),
        ("2", lambda d: d["metrics"]["novelty_gain_pct"].pop("mllm"), claims.NOT_MEASURED),
    ],
)  # fmt: skip
def test_experiment_claims_follow_the_numbers(
    full_inputs: PipelineConfig, claim_id, change, expected
) -> None:
    assert _status(build_report(full_inputs), claim_id) == claims.HOLDS
    _rewrite_experiment(full_inputs, change)
    assert _status(build_report(full_inputs), claim_id) == expected


def test_aggregates_finetune_and_replay_claims_flip(full_inputs: PipelineConfig) -> None:
    layout = WorkLayout.of(full_inputs)
    table = pd.read_parquet(layout.aggregates_overall_path)
    table.loc[table["pair_class"] == "serendipitous", ["mean_satisfaction", "ci_low", "ci_high"]] = [
        0.4,
        0.38,
        0.42,
    ]
    write_parquet_atomic(pa.Table.from_pandas(table, preserve_index=False), layout.aggregates_overall_path)
    summary = json.loads((layout.finetune_summary_path).read_text())
    summary["non_llm_baseline"]["recall"] = 0.55
    write_json_atomic(summary, layout.finetune_summary_path)
    replay = replay_document()
    replay["subsets"]["all"]["methods"]["non_llm_frequent"].update(mean=0.6, ci_low=0.52, ci_high=0.7)
    write_json_atomic(replay, layout.replay_path)
    report = build_report(full_inputs)
    assert [_status(report, cid) for cid in ("1", "7", "8")] == [
        claims.FAILS,
        claims.INCONCLUSIVE,
        claims.FAILS,
    ]


def test_ablation_claims_follow_its_table(full_inputs: PipelineConfig) -> None:
    path = WorkLayout.of(full_inputs).ablation_table_path
    document = json.loads(path.read_text())
    original = copy.deepcopy(document)
    for row in document["table"]:
        if row["arm"] == "thumbnail_cot":
            row["final_recall_mean"] = 0.05
        if row["arm"] == "video_cot-1f":
            row["final_recall_ci95"] = None  # one seed: no interval
    write_json_atomic(document, path)
    report = build_report(full_inputs)
    assert _status(report, "6c") == claims.FAILS
    assert _status(report, "6d") == claims.INCONCLUSIVE
    assert _status(report, "6a") == claims.HOLDS
    assert original["findings"][2]["verdict"] == _status(report, "6b") == claims.HOLDS


def test_bad_input_names_the_file(full_inputs: PipelineConfig) -> None:
    path = WorkLayout.of(full_inputs).experiment_path
    path.write_text("{not json")
    with pytest.raises(ValueError, match=re.escape(str(path))):
        build_report(full_inputs)


def test_command_writes_the_report(full_inputs: PipelineConfig, tmp_path: Path) -> None:
    import yaml

    from serendipity.app.commands.report import app

    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(full_inputs.model_dump(mode="json")))
    result = CliRunner().invoke(app, ["--config", str(config_path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "report.html").exists() and (tmp_path / "out" / "report.json").exists()


def _rewrite_summary(config: PipelineConfig, **changes: Any) -> None:
    path = WorkLayout.of(config).finetune_summary_path
    write_json_atomic({**json.loads(path.read_text()), **changes}, path)


def test_headline_recall_is_the_served_constrained_one(full_inputs: PipelineConfig) -> None:
    """Claim 7 judges the sibling-constrained recall that reaches Feast; free recall is only shown."""
    free = {"items": 50, "match_rate": 0.2, "recall": 0.02, "recall_at_k": 0.04, "k": 3}
    served = {"items": 50, "match_rate": 1.0, "recall": 0.6, "recall_at_k": 0.8, "k": 3}
    gate = {
        "rule": "paired_not_worse",
        "margin": 0.0,
        "decision": "publish",
        "served_model_version": "v1",
        "worse_than": [],
        "n": 50,
        "small_sample": True,
        "candidate": {"recall": 0.6, "ci_low": 0.46, "ci_high": 0.72, "items": 50},
        "references": {"non_llm_guess": {"recall": 0.1, "ci_low": 0.04, "ci_high": 0.21, "items": 50}},
        "comparisons": {
            "non_llm_guess": {
                "difference": 0.5,
                "difference_ci_low": 0.36,
                "difference_ci_high": 0.64,
                "p_value": 1e-7,
            }
        },
    }
    _rewrite_summary(full_inputs, final_metrics=free, served_metrics=served, gate=gate)
    report = build_report(full_inputs).to_json()
    claim = next(c for c in report["claims"] if c["claim_id"] == "7")
    assert claim["status"] == claims.HOLDS
    assert "served recall on n=50 validation items: served 0.600" in claim["evidence"]
    assert "free-decoding recall 0.020 (diagnostic" in claim["evidence"]
    assert "publish gate (paired_not_worse, margin 0.0): publish" in claim["evidence"]
    assert "WARNING: only 50 validation items" in claim["evidence"]
    assert report["sections"]["finetune"]["data"]["summary"]["gate"] == gate
    page = write_report(full_inputs).html.read_text()
    assert "served nomination recall" in page and "free decoding recall (diagnostic)" in page
    assert "<b>publish</b>" in page and "+0.500 [+0.360, +0.640]" in page and "fewer than 200" in page

    high_free = {**served, "recall": 0.95}  # on free recall the claim would hold
    guess = {"items": 50, "hits": 20, "recall": 0.4}
    _rewrite_summary(full_inputs, final_metrics=high_free, served_metrics=free, non_llm_baseline=guess)
    assert _status(build_report(full_inputs), "7") == claims.FAILS
    _rewrite_summary(full_inputs, served_metrics=None)
    assert _status(build_report(full_inputs), "7") == claims.NOT_MEASURED


def test_every_not_measured_claim_names_the_command_that_measures_it(config: PipelineConfig) -> None:
    report = build_report(config, "my.yaml").to_json()
    for claim in report["claims"]:
        command = report["sections"][claim["source"]]["command"]
        assert claim["status"] == claims.NOT_MEASURED
        assert claim["evidence"].endswith(f"measure it with `{command}`"), claim
    without_world = build_report(config.model_copy(update={"world": None}), "my.yaml")
    assert "no simulator here" in without_world.commands["experiment"]


def test_replay_figures_enter_the_claims(full_inputs: PipelineConfig) -> None:
    layout = WorkLayout.of(full_inputs)
    write_json_atomic({**replay_document(), "served_model_versions": ["non-llm-guess"]}, layout.replay_path)
    claim = next(c for c in build_report(full_inputs).claims if c.claim_id == "8")
    assert claim.status == claims.HOLDS and claim.source == "replay"
    assert "hit rate on 100 held-out next items: mllm 0.400 [0.310, 0.500] vs non-LLM 0.150" in claim.evidence
    assert "(random sibling 0.200 [0.130, 0.270])" in claim.evidence
    assert "served cluster from non-llm-guess" in claim.evidence


def test_replay_is_a_stage_for_datasets_without_a_simulator(config: PipelineConfig) -> None:
    from serendipity.app.pipeline import run_pipeline, select_stages
    from serendipity.eval.replay import ReplayError

    no_world = config.model_copy(update={"world": None})
    replay, evaluate = select_stages(["replay"])[0], select_stages(["evaluate"])[0]
    assert replay.enabled(no_world) and not replay.enabled(config)
    assert evaluate.enabled(config) and not evaluate.enabled(no_world)
    assert replay.outputs(no_world) == [WorkLayout.of(no_world).replay_path]
    assert [s.name for s in select_stages()].index("replay") < [s.name for s in select_stages()].index(
        "report"
    )
    assert [r.status for r in run_pipeline(config, stages=["replay"])] == ["disabled"]
    with pytest.raises(ReplayError, match="validated interactions not found"):  # the stage runs run_replay
        run_pipeline(no_world, stages=["replay"])


def test_ablation_claims_carry_the_run_provenance(full_inputs: PipelineConfig) -> None:
    report = build_report(full_inputs, "my.yaml")
    ablation = [c for c in report.claims if c.source == "ablation"]
    assert len(ablation) == 4
    for claim in ablation:
        assert f"from `{ABLATION_COMMAND}` (seeds [0, 1], 20 steps" in claim.evidence, claim
    assert report.to_json()["sections"]["ablation"]["data"]["settings"]["command"] == ABLATION_COMMAND
    assert ABLATION_COMMAND in write_report(full_inputs).html.read_text()


def test_ablation_records_the_command_that_reruns_it() -> None:
    from serendipity.mllm.ablation import ablation_command, paper_experiments

    command = ablation_command("my.yaml", list(paper_experiments().values()), [0, 1, 2], 40, 10)
    assert command == (
        "serendipity experiment ablate --config my.yaml --seeds 0,1,2 --max-steps 40 --eval-every 10 "
        "--experiments " + ",".join(paper_experiments())
    )

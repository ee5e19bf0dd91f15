"""The offline ablation on the Spark chain output: table files, curves, sane values, reruns reuse arms."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from serendipity.config import PipelineConfig
from serendipity.layout import WorkLayout
from serendipity.mllm.ablation import Arm, Experiment, ablation_dir, arm_config, run_ablation
from serendipity.mllm.ablation_report import BASELINE_ARM, findings, mean_curves, run_metrics
from serendipity.mllm.prompts import PromptStyle

MAX_STEPS = 3
TINY = Experiment(
    "tiny", "text vs video CoT, 1 frame", (Arm(PromptStyle.TEXT), Arm(PromptStyle.VIDEO_COT, 1))
)


@pytest.fixture(scope="module")
def ablation(mined: PipelineConfig, ray_local):
    report = run_ablation(mined, experiments=[TINY], seeds=[0], max_steps=MAX_STEPS, eval_every=MAX_STEPS)
    return mined, report


@pytest.mark.slow
def test_ablation_writes_table_curves_and_sane_values(ablation) -> None:
    config, report = ablation
    out = ablation_dir(config)
    for name in ("ablation.csv", "ablation.json", "ablation.md", "histories.csv", "curves_tiny.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "curves_tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(out / "ablation.csv")
    arms = table[table["experiment"] == "tiny"].set_index("arm")
    assert list(arms.index) == ["text", "video_cot-1f"]
    assert (arms["seeds"] == 1).all()
    for column in ("final_match_rate_mean", "best_match_rate_mean", "final_recall_mean", "best_recall_mean"):
        assert arms[column].between(0, 1).all(), column
    assert (arms["best_recall_mean"] >= arms["final_recall_mean"]).all()
    for arm, row in arms.iterrows():
        if row["final_match_rate_mean"] > 0:
            assert 0 <= row["steps_to_90pct_match_mean"] <= MAX_STEPS, arm
        else:
            assert math.isnan(row["steps_to_90pct_match_mean"]), arm
    baseline = table.set_index("arm").loc[BASELINE_ARM]
    assert 0 <= baseline["final_recall_mean"] <= 1
    document = json.loads((out / "ablation.json").read_text())
    assert document["settings"]["max_steps"] == MAX_STEPS
    assert {f["finding"] for f in document["findings"]} >= {
        "video beats text only",
        "thumbnail beats a random frame",
    }
    assert all(f["verdict"] == "not run" for f in document["findings"])  # the tiny grid has none of the pairs
    markdown = (out / "ablation.md").read_text()
    assert "| text | 1 |" in markdown and BASELINE_ARM in markdown


@pytest.mark.slow
def test_each_arm_trains_from_the_seeded_base_in_its_own_directory(ablation) -> None:
    config, _ = ablation
    arm = TINY.arms[1]
    arm_cfg = arm_config(config, arm, 0, ablation_dir(config) / "base" / "seed0", MAX_STEPS, MAX_STEPS)
    layout = WorkLayout.of(arm_cfg)
    assert layout.work_dir == ablation_dir(config) / "video_cot-1f" / "seed0"
    main = WorkLayout.of(config)
    assert pq.read_table(layout.sft_path).num_rows == pq.read_table(main.sft_path).num_rows > 0
    assert layout.pairs_path.parent.resolve() == main.pairs_path.parent.resolve()
    summary = json.loads((layout.finetune_dir / "summary.json").read_text())
    assert summary["prompt_style"] == "video_cot" and summary["num_frames"] == 1
    assert summary["steps"] == MAX_STEPS
    assert Path(summary["base_model_dir"]) == ablation_dir(config) / "base" / "seed0"
    assert not (main.finetune_dir / "summary.json").exists()  # the main run is untouched


@pytest.mark.slow
def test_rerun_reuses_finished_arms(ablation) -> None:
    config, report = ablation
    summary_path = WorkLayout.of(arm_config(config, TINY.arms[0], 0, Path("/unused"), 1, 1)).finetune_dir
    before = (summary_path / "ray_train").stat().st_mtime_ns
    again = run_ablation(config, experiments=[TINY], seeds=[0], max_steps=MAX_STEPS, eval_every=MAX_STEPS)
    assert (summary_path / "ray_train").stat().st_mtime_ns == before
    pd.testing.assert_frame_equal(again.runs, report.runs)


def test_cli_says_clearly_when_the_spark_chain_has_not_run(tmp_path: Path) -> None:
    from serendipity.app.cli import app

    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({"dataset_dir": str(tmp_path / "d"), "work_dir": str(tmp_path / "w")}))
    result = CliRunner().invoke(app, ["experiment", "ablate", "--config", str(config)])
    assert result.exit_code == 1
    assert "examples.parquet is missing" in result.output and "curate" in result.output


def _history(arm: str, seed: int, match: list[float], recall: list[float]) -> pd.DataFrame:
    steps = [10 * (i + 1) for i in range(len(match))]
    return pd.DataFrame({"arm": arm, "seed": seed, "step": steps, "match_rate": match, "recall": recall})


def test_run_metrics_and_findings_follow_their_definitions() -> None:
    cot = _history("video_cot-4f", 0, [0.5, 0.9, 1.0], [0.1, 0.3, 0.4])
    assert run_metrics(cot) == {
        "final_match_rate": 1.0,
        "best_match_rate": 1.0,
        "final_recall": 0.4,
        "best_recall": 0.4,
        "steps_to_90pct_match": 20.0,
        "steps": 30.0,
    }
    assert math.isnan(run_metrics(_history("text", 0, [0.0, 0.0], [0.0, 0.0]))["steps_to_90pct_match"])
    direct = _history("video_text-4f", 0, [0.2, 0.5, 0.95], [0.1, 0.2, 0.2])
    video = _history("video-4f", 0, [0.1, 0.4, 0.9], [0.2, 0.3, 0.5])
    text = _history("text", 0, [0.3, 0.6, 0.9], [0.1, 0.1, 0.1])
    histories = pd.concat([cot, direct, video, text], ignore_index=True)
    stats = pd.DataFrame(
        {"final_recall_mean": [0.4, 0.2, 0.5, 0.1], "final_recall_ci95": [math.nan] * 4},
        index=["video_cot-4f", "video_text-4f", "video-4f", "text"],
    )
    verdicts = {f["finding"]: f["verdict"] for f in findings(stats, mean_curves(histories))}
    assert verdicts == {
        "video beats text only": "holds",
        "naive video + text is worse than video only": "holds",
        "CoT reaches a high match rate sooner": "holds",
        "recall saturates around 4 frames": "not run",
        "thumbnail beats a random frame": "not run",
    }


def test_cot_finding_breaks_step_ties_by_the_mean_match_rate() -> None:
    cot = _history("video_cot-4f", 0, [0.6, 1.0], [0.1, 0.2])
    direct = _history("video_text-4f", 0, [0.2, 1.0], [0.1, 0.2])
    stats = pd.DataFrame(index=pd.Index([], name="arm"))
    found = {f["finding"]: f for f in findings(stats, mean_curves(pd.concat([cot, direct])))}
    assert found["CoT reaches a high match rate sooner"]["verdict"] == "holds"
    slow = _history("video_cot-4f", 0, [0.1, 1.0], [0.1, 0.2])
    found = {f["finding"]: f for f in findings(stats, mean_curves(pd.concat([slow, direct])))}
    assert found["CoT reaches a high match rate sooner"]["verdict"] == "does not hold"

"""Fine-tuning through Ray Train on the synthetic world's curated set: loss, curves, checkpoints, resume."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from serendipity.config import PipelineConfig
from serendipity.layout import WorkLayout

pytestmark = pytest.mark.slow


def _isolated(config: PipelineConfig, work_dir: Path, **mllm: object) -> PipelineConfig:
    """The chain's config with its own work dir holding a copy of the chain's curated set."""
    shared, own = WorkLayout.of(config), WorkLayout(work_dir)
    for source, target in (
        (shared.sft_path.parent, own.sft_path.parent),
        (shared.tree_dir, own.tree_dir),
    ):
        if source.exists():
            shutil.copytree(source, target, dirs_exist_ok=True)
    shutil.copytree(shared.validated_dir, own.validated_dir, dirs_exist_ok=True)
    settings = {"max_steps": 4, "eval_every": 2, "batch_size": 8, "num_beams": 2, **mllm}
    return config.model_copy(update={"work_dir": work_dir, "mllm": config.mllm.model_copy(update=settings)})


def _predict_two(config: PipelineConfig) -> list:
    from serendipity.mllm.data import load_validation
    from serendipity.mllm.predictor import predictor_from_config

    _, items, _ = load_validation(config)
    return predictor_from_config(config).predict(items[:2])


def test_finetune_checkpoints_resumes_and_publishes(mined: PipelineConfig, ray_local, tmp_path: Path) -> None:
    from serendipity.mllm.finetune import run_finetune
    from serendipity.mllm.model import load_model
    from serendipity.mllm.training import checkpoint_step, latest_checkpoint

    config = _isolated(mined, tmp_path / "work")
    layout = WorkLayout.of(config)
    first = run_finetune(config)
    steps = [row["step"] for row in first["history"]]
    assert steps == [2, 4]
    assert first["history"][-1]["loss"] < first["history"][0]["loss"]
    assert (layout.finetune_dir / "curves.csv").exists() and (layout.finetune_dir / "curves.png").exists()
    assert len(pd.read_csv(layout.finetune_dir / "curves.csv")) == 2
    assert checkpoint_step(latest_checkpoint(layout.finetune_dir)) == 4
    assert 0.0 <= first["non_llm_baseline"]["recall"] <= 1.0
    assert (layout.models_dir / "latest").read_text() == first["model_version"]

    longer = config.model_copy(update={"mllm": config.mllm.model_copy(update={"max_steps": 6})})
    second = run_finetune(longer)
    assert second["resumed_from_step"] == 4 and second["steps"] == 6
    assert [row["step"] for row in second["history"]] == [2, 4, 6]
    assert (layout.models_dir / "latest").read_text() == second["model_version"] != first["model_version"]
    assert type(load_model(layout.models_dir)[0]).__name__ == "LlavaForConditionalGeneration"
    assert run_finetune(longer)["model_version"] == second["model_version"]  # a re-run publishes nothing new

    tree_siblings = {p.cluster_id for ranked in _predict_two(longer) for p in ranked}
    assert tree_siblings and None not in tree_siblings  # constrained answers always name a cluster


def test_second_architecture_finetunes_and_generates(
    mined: PipelineConfig, ray_local, tmp_path: Path
) -> None:
    from serendipity.mllm.finetune import run_finetune
    from serendipity.mllm.model import load_model

    config = _isolated(
        mined,
        tmp_path / "work",
        architecture="gemma3",
        model_dir="models/gemma3",
        max_steps=2,
        lora=True,
    )
    summary = run_finetune(config)
    assert summary["steps"] == 2 and summary["lora"]
    model, _ = load_model(WorkLayout.of(config).models_dir)
    assert type(model).__name__ == "Gemma3ForConditionalGeneration"
    predictions = _predict_two(config)
    assert len(predictions) == 2 and all(ranked for ranked in predictions)

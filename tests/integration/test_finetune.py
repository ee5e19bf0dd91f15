"""Fine-tuning through Ray Train on the synthetic world's curated set: loss, curves, checkpoints, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from finetune_helpers import isolated_finetune_config

from serendipity.config import PipelineConfig
from serendipity.layout import WorkLayout
from serendipity.mllm.gate import NON_LLM_GUESS_VERSION, GateConfig

pytestmark = pytest.mark.slow


_isolated = isolated_finetune_config


def _predict_two(config: PipelineConfig) -> list:
    from serendipity.mllm.data import load_validation
    from serendipity.mllm.predictor import predictor_from_config

    _, items, _ = load_validation(config)
    return predictor_from_config(config).predict(items[:2])


def test_finetune_checkpoints_resumes_and_publishes(mined: PipelineConfig, ray_local, tmp_path: Path) -> None:
    from serendipity.mllm.checkpoints import checkpoint_step, latest_checkpoint
    from serendipity.mllm.finetune import run_finetune
    from serendipity.mllm.model import load_model

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
    gate = first["gate"]  # the default gate: not significantly worse than the guess, so published
    assert gate["decision"] == "publish" and gate["served_model_version"] == first["model_version"]
    assert gate["candidate"]["recall"] == first["served_metrics"]["recall"]
    assert gate["candidate"]["ci_high"] >= gate["references"]["non_llm_guess"]["ci_low"]
    assert json.loads(layout.finetune_summary_path.read_text())["gate"] == gate

    longer = config.model_copy(update={"mllm": config.mllm.model_copy(update={"max_steps": 6})})
    second = run_finetune(longer)
    assert second["resumed_from_step"] == 4 and second["steps"] == 6
    assert [row["step"] for row in second["history"]] == [2, 4, 6]
    assert (layout.models_dir / "latest").read_text() == second["model_version"] != first["model_version"]
    assert type(load_model(layout.models_dir)[0]).__name__ == "LlavaForConditionalGeneration"
    assert run_finetune(longer)["model_version"] == second["model_version"]  # a re-run publishes nothing new

    tree_siblings = {p.cluster_id for ranked in _predict_two(longer) for p in ranked}
    assert tree_siblings and None not in tree_siblings  # constrained answers always name a cluster

    # A gate the candidate cannot pass keeps the published model, compared against it too.
    unbeatable = longer.mllm.model_copy(update={"max_steps": 8, "gate": GateConfig(margin=-1.0)})
    held = run_finetune(longer.model_copy(update={"mllm": unbeatable}))
    assert held["gate"]["decision"] == "hold back" and held["steps"] == 8
    assert held["gate"]["references"]["published"]["model_version"] == second["model_version"]
    assert (layout.models_dir / "latest").read_text() == held["model_version"] == second["model_version"]


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


def test_gate_holds_back_a_model_worse_than_the_guess_and_the_chain_serves_the_guess(
    mined: PipelineConfig, ray_local, tmp_path: Path
) -> None:
    """No published model and a candidate the gate rejects: `latest` stays absent, inference writes the
    non-LLM guess for every corpus item under the model version saying so."""
    import pyarrow.parquet as pq

    from ray_jobs import infer
    from serendipity.mllm.finetune import run_finetune
    from serendipity.mllm.guess import best_sibling_guess
    from serendipity.schema import ITEMS_FILE, level_column

    config = _isolated(mined, tmp_path / "work", max_steps=2, eval_every=2, gate=GateConfig(margin=-1.0))
    layout = WorkLayout.of(config)
    summary = run_finetune(config)
    gate = summary["gate"]
    assert gate["references"]["non_llm_guess"]["ci_low"] > 0  # the guess hits: margin -1 is unbeatable
    assert gate["decision"] == "hold back" and gate["significantly_worse_than"] == ["non_llm_guess"]
    assert summary["model_version"] == gate["served_model_version"] == NON_LLM_GUESS_VERSION
    assert not layout.latest_model_pointer.exists() and summary["model_dir"] is None
    assert json.loads(layout.finetune_summary_path.read_text())["gate"] == gate

    figures = infer.run(config)
    output = pq.read_table(layout.serendipity_path).to_pandas()
    corpus = set(pq.read_table(layout.corpus_path).column("item_id").to_pylist())
    assert figures["model_version"] == NON_LLM_GUESS_VERSION and set(output["item_id"]) <= corpus
    assert len(output) > 0 and (output["model_version"] == NON_LLM_GUESS_VERSION).all()
    guess, _ = best_sibling_guess(config)
    items = pq.read_table(layout.catalog_dir() / ITEMS_FILE).to_pandas().set_index("item_id")
    own = items.loc[output["item_id"], level_column(config.mining.level)].astype(int)
    assert output["serendipitous_cluster"].tolist() == [guess[cluster] for cluster in own]
    assert infer.run(config)["to_infer"] == 0  # incremental under the guess's version too

"""Fine-tuning through Ray Train on the synthetic world's curated set: loss, curves, checkpoints, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from finetune_helpers import isolated_finetune_config

from serendipity.config import GateConfig, PipelineConfig
from serendipity.layout import WorkLayout
from serendipity.mllm.gate import NON_LLM_GUESS_VERSION
from serendipity.mllm.results import FinetuneSummary, ServedChoice

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

    config = _isolated(mined, tmp_path / "work", gate=GateConfig(rule="always"))
    layout = WorkLayout.of(config)
    first = run_finetune(config)
    steps = [row["step"] for row in first.history]
    assert steps == [2, 4]
    assert first.history[-1]["loss"] < first.history[0]["loss"]
    assert (layout.finetune_dir / "curves.csv").exists() and (layout.finetune_dir / "curves.png").exists()
    assert len(pd.read_csv(layout.finetune_dir / "curves.csv")) == 2
    assert checkpoint_step(latest_checkpoint(layout.finetune_dir)) == 4
    assert 0.0 <= first.non_llm_baseline.recall <= 1.0
    assert (layout.models_dir / "latest").read_text() == first.model_version
    gate = first.gate  # rule "always": published whatever the figures, which are still recorded
    assert gate.decision == "publish" and gate.served_model_version == first.model_version
    assert gate.candidate.recall == first.served_metrics.recall
    assert set(gate.comparisons) == {"transition_prior", "non_llm_guess"}
    assert gate.n == first.validation.nominators["candidate"].items > 0
    assert first.served == ServedChoice("model", first.model_version, first.prior_weight, 0.0)
    written = json.loads(layout.finetune_summary_path.read_text())
    assert written["served"] == {
        "kind": "model",
        "model_version": first.model_version,
        "prior_weight": first.prior_weight,
        "text_weight": 0.0,
    }
    assert written["gate"] == json.loads(json.dumps(gate.to_json()))
    back = FinetuneSummary.read(layout.finetune_summary_path)
    assert back.gate == gate and back.served == first.served and back.history == first.history

    longer = config.model_copy(update={"mllm": config.mllm.model_copy(update={"max_steps": 6})})
    second = run_finetune(longer)
    assert second.resumed_from_step == 4 and second.steps == 6
    assert [row["step"] for row in second.history] == [2, 4, 6]
    assert (layout.models_dir / "latest").read_text() == second.model_version != first.model_version
    assert type(load_model(layout.models_dir)[0]).__name__ == "LlavaForConditionalGeneration"
    assert run_finetune(longer).model_version == second.model_version  # a re-run publishes nothing new

    tree_siblings = {p.cluster_id for ranked in _predict_two(longer) for p in ranked}
    assert tree_siblings and None not in tree_siblings  # constrained answers always name a cluster

    # A gate the candidate cannot pass keeps the published model, compared against it too.
    unbeatable = longer.mllm.model_copy(update={"max_steps": 8, "gate": GateConfig(margin=-1.0)})
    held = run_finetune(longer.model_copy(update={"mllm": unbeatable}))
    assert held.gate.decision == "hold back" and held.steps == 8
    assert "published" in held.gate.comparisons
    assert (layout.models_dir / "latest").read_text() == second.model_version


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
        gate=GateConfig(rule="always"),  # published whatever its recall: the test loads and infers with it
    )
    summary = run_finetune(config)
    assert summary.steps == 2 and summary.lora
    model, _ = load_model(WorkLayout.of(config).models_dir)
    assert type(model).__name__ == "Gemma3ForConditionalGeneration"
    predictions = _predict_two(config)
    assert len(predictions) == 2 and all(ranked for ranked in predictions)


def test_gate_holds_back_a_model_worse_than_the_references_and_the_chain_serves_the_best(
    mined: PipelineConfig, ray_local, tmp_path: Path
) -> None:
    """No published model and a candidate the gate rejects: `latest` stays absent, inference writes the
    best reference's nomination (the prior alone or the non-LLM guess) for every corpus item under the
    version saying so."""
    import pyarrow.parquet as pq

    from ray_jobs import infer
    from serendipity.mllm.data import load_tree
    from serendipity.mllm.finetune import run_finetune
    from serendipity.mllm.generation import serendipitous_candidates
    from serendipity.mllm.satisfaction_guess import best_sibling_guess
    from serendipity.nomination.combine import PRIOR_ALONE, nominate
    from serendipity.nomination.prior import load_prior
    from serendipity.schema import ITEMS_FILE, level_column

    config = _isolated(mined, tmp_path / "work", max_steps=2, eval_every=2, gate=GateConfig(margin=-1.0))
    layout = WorkLayout.of(config)
    summary = run_finetune(config)
    gate = summary.gate
    assert gate.decision == "hold back"  # margin -1: worse than every reference
    assert gate.worse_than == ["transition_prior", "non_llm_guess"]
    best = gate.best_reference
    recalls = {name: figures.recall for name, figures in gate.references.items()}
    assert recalls[best] == max(recalls.values())
    assert summary.served.kind == best and not layout.latest_model_pointer.exists()

    figures = infer.run(config)
    output = pq.read_table(layout.serendipity_path).to_pandas()
    corpus = set(pq.read_table(layout.corpus_path).column("item_id").to_pylist())
    assert figures.model_version == summary.feature_version and set(output["item_id"]) <= corpus
    assert len(output) > 0 and (output["model_version"] == summary.feature_version).all()
    items = pq.read_table(layout.catalog_dir() / ITEMS_FILE).to_pandas().set_index("item_id")
    own = items.loc[output["item_id"], level_column(config.mining.level)].astype(int)
    if best == "non_llm_guess":
        assert summary.model_version == NON_LLM_GUESS_VERSION
        guess, _ = best_sibling_guess(config)
        expected = [guess[cluster] for cluster in own]
    else:
        tree, prior, level = load_tree(layout), load_prior(layout), config.mining.level
        expected = []
        for item, cluster in zip(output["item_id"], own, strict=True):
            options = serendipitous_candidates(tree, cluster, level)
            chances = prior.probabilities(item, cluster, options)
            expected.append(nominate(item, options, None, chances, PRIOR_ALONE).best)
    assert output["serendipitous_cluster"].tolist() == expected
    assert infer.run(config).to_infer == 0  # incremental under the reference's version too

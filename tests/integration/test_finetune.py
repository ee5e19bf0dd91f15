"""Fine-tuning through Ray Train on the synthetic world's curated set: loss, curves, checkpoints, resume.

The checkpoint/resume runs train on two Ray Train workers (DDP over gloo on CPU), so the same runs also
show that two workers train like one: their losses against the one-worker run of the very same training
steps (``train_steps``, Ray-free) on the same base model, examples and seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from conftest import PublishedFinetune
from finetune_helpers import isolated_finetune_config

from serendipity.config import GateConfig, PipelineConfig
from serendipity.layout import WorkLayout
from serendipity.mllm.gate import NON_LLM_GUESS_VERSION
from serendipity.mllm.results import FinetuneSummary, ServedChoice

pytestmark = pytest.mark.slow
# each evaluation window's mean loss on two workers within 0.1% of the one-worker loss (the only
# differences are float summation orders: gloo's gradient all-reduce and per-shard padding)
RELATIVE_TOLERANCE = 1e-3

_isolated = isolated_finetune_config


def _predict_two(config: PipelineConfig) -> list:
    from serendipity.mllm.data import load_validation
    from serendipity.mllm.predictor import predictor_from_config

    _, items, _ = load_validation(config)
    return predictor_from_config(config).predict(items[:2])


@dataclass(frozen=True)
class AfterFirstRun:
    """What the first run left in the work dir, read before the resumed run replaces it."""

    latest: str  # models/latest
    checkpoint_step: int  # of the latest checkpoint
    curves: pd.DataFrame  # curves.csv
    curves_png: bool
    summary_path: Path  # a copy of its summary.json


@dataclass(frozen=True)
class Resumed:
    config: PipelineConfig  # 4 steps on two workers, evaluated every 2, published whatever its figures
    first: FinetuneSummary
    after_first: AfterFirstRun
    longer: PipelineConfig  # the same, 6 steps
    second: FinetuneSummary  # resumed from the first run's last checkpoint


@pytest.fixture(scope="module")
def resumed(
    published_finetune: PublishedFinetune, ray_local, tmp_path_factory: pytest.TempPathFactory
) -> Resumed:
    """The session's two-worker run of 4 steps (``published_finetune``), then the same run extended to
    6 steps (resumed) in its work dir."""
    from serendipity.mllm.checkpoints import checkpoint_step, latest_checkpoint
    from serendipity.mllm.finetune import run_finetune

    config, first = published_finetune.config, published_finetune.summary
    layout = WorkLayout.of(config)
    summary_copy = tmp_path_factory.mktemp("resumed") / "first-summary.json"
    summary_copy.write_bytes(layout.finetune_summary_path.read_bytes())
    after_first = AfterFirstRun(
        latest=(layout.models_dir / "latest").read_text(),
        checkpoint_step=checkpoint_step(latest_checkpoint(layout.finetune_dir)),
        curves=pd.read_csv(layout.finetune_dir / "curves.csv"),
        curves_png=(layout.finetune_dir / "curves.png").exists(),
        summary_path=summary_copy,
    )
    longer = config.model_copy(update={"mllm": config.mllm.model_copy(update={"max_steps": 6})})
    return Resumed(config, first, after_first, longer, run_finetune(longer))


def test_finetune_checkpoints_resumes_and_publishes(resumed: Resumed) -> None:
    from serendipity.mllm.finetune import run_finetune
    from serendipity.mllm.model import load_model

    config, first, second, after_first = resumed.config, resumed.first, resumed.second, resumed.after_first
    layout = WorkLayout.of(config)
    steps = [row["step"] for row in first.history]
    assert steps == [2, 4]
    assert first.history[-1]["loss"] < first.history[0]["loss"]
    assert after_first.curves_png and len(after_first.curves) == 2
    assert after_first.checkpoint_step == 4
    assert 0.0 <= first.non_llm_baseline.recall <= 1.0
    assert after_first.latest == first.model_version
    gate = first.gate  # rule "always": published whatever the figures, which are still recorded
    assert gate.decision == "publish" and gate.served_model_version == first.model_version
    assert gate.candidate.recall == first.served_metrics.recall
    assert set(gate.comparisons) == {"transition_prior", "non_llm_guess"}
    assert gate.n == first.validation.nominators["candidate"].items > 0
    assert first.served == ServedChoice("model", first.model_version, first.prior_weight, 0.0)
    written = json.loads(after_first.summary_path.read_text())
    assert written["served"] == {
        "kind": "model",
        "model_version": first.model_version,
        "prior_weight": first.prior_weight,
        "text_weight": 0.0,
    }
    assert written["gate"] == json.loads(json.dumps(gate.to_json()))
    back = FinetuneSummary.read(after_first.summary_path)
    assert back.gate == gate and back.served == first.served and back.history == first.history

    longer = resumed.longer
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


def _one_worker_losses(config: PipelineConfig) -> dict[int, float]:
    """Mean loss per evaluation window of the training steps on one worker, in-process."""
    import torch

    from serendipity.mllm.data import build_finetune_data
    from serendipity.mllm.finetune import ensure_base_model
    from serendipity.mllm.model import load_model
    from serendipity.mllm.training import train_steps, training_optimizer

    torch.manual_seed(config.mllm.seed)
    model, processor = load_model(ensure_base_model(config))
    model.train()
    losses: dict[int, float] = {}
    train_steps(
        model,
        processor,
        training_optimizer(model, config.mllm.learning_rate),
        build_finetune_data(config, processor).train,
        device="cpu",
        seed=config.mllm.seed,
        batch_size=config.mllm.batch_size,
        max_steps=config.mllm.max_steps,
        eval_every=config.mllm.eval_every,
        on_evaluation=losses.__setitem__,
    )
    return losses


def test_two_workers_match_one_and_resume(resumed: Resumed, mined: PipelineConfig, tmp_path: Path) -> None:
    """Two Ray Train workers train like one: same data, same global batch, same losses, also across the
    resume from the 4-step run's checkpoint."""
    assert resumed.first.steps == resumed.after_first.checkpoint_step == 4
    assert resumed.second.resumed_from_step == 4 and resumed.second.steps == 6
    history = {int(row["step"]): row for row in resumed.second.history}
    assert sorted(history) == [2, 4, 6]

    reference = _one_worker_losses(_isolated(mined, tmp_path / "one", max_steps=6))
    print("per-step losses, one worker:", reference)
    for step, row in history.items():
        workers = [row["loss_worker_0"], row["loss_worker_1"]]
        print(f"step {step}: two workers {row['loss']:.6f} (worker losses {workers})")
        assert row["loss"] == pytest.approx(reference[step], rel=RELATIVE_TOLERANCE)
        assert min(workers) <= row["loss"] <= max(workers)  # the token-weighted mean of the shares
    assert history[4]["loss"] < history[2]["loss"]


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

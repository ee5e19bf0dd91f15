"""Two Ray Train workers (DDP over gloo on CPU) train like one: same data, same global batch, same losses.

The reference is the one-worker run of the very same training steps (``train_steps``, Ray-free) on the
same base model, examples and seed; the two-worker run goes through Ray Train, stops at a checkpoint and
resumes from it. Tolerance: each evaluation window's mean loss within 0.1% of the one-worker loss (the
only differences are float summation orders: gloo's gradient all-reduce and per-shard padding).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from finetune_helpers import isolated_finetune_config

from serendipity.config import PipelineConfig

pytestmark = pytest.mark.slow
RELATIVE_TOLERANCE = 1e-3


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


def test_two_workers_match_one_and_resume(mined: PipelineConfig, ray_local, tmp_path: Path) -> None:
    from serendipity.layout import WorkLayout
    from serendipity.mllm.checkpoints import checkpoint_step, latest_checkpoint
    from serendipity.mllm.finetune import run_finetune

    # A quarter core each: the session's Serve app holds part of local Ray's 2 CPUs.
    two = isolated_finetune_config(mined, tmp_path / "two", num_workers=2, cpus_per_worker=0.25, max_steps=2)
    first = run_finetune(two)
    assert first.steps == 2
    assert checkpoint_step(latest_checkpoint(WorkLayout.of(two).finetune_dir)) == 2
    longer = two.model_copy(update={"mllm": two.mllm.model_copy(update={"max_steps": 4})})
    resumed = run_finetune(longer)
    assert resumed.resumed_from_step == 2 and resumed.steps == 4
    history = {int(row["step"]): row for row in resumed.history}
    assert sorted(history) == [2, 4]

    reference = _one_worker_losses(isolated_finetune_config(mined, tmp_path / "one"))
    print("per-step losses, one worker:", reference)
    for step, row in history.items():
        workers = [row["loss_worker_0"], row["loss_worker_1"]]
        print(f"step {step}: two workers {row['loss']:.6f} (worker losses {workers})")
        assert row["loss"] == pytest.approx(reference[step], rel=RELATIVE_TOLERANCE)
        assert min(workers) <= row["loss"] <= max(workers)  # the token-weighted mean of the shares
    assert history[4]["loss"] < history[2]["loss"]

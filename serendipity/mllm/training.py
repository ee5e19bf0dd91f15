"""The Ray Train worker loop: data-parallel supervised fine-tuning with periodic evaluation and checkpoints.

Each worker trains on its shard of the examples (DDP when there are several); rank 0 evaluates match
rate and recall on the held-out items every ``eval_every`` steps, writes the curves and reports a
checkpoint (weights or LoRA adapter + optimizer state). A restarted run resumes from the checkpoint.
The training steps themselves (``train_steps``) need no Ray: the in-process ablation runner uses them too.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serendipity.config import PipelineConfig
from serendipity.layout import WorkLayout
from serendipity.mllm.checkpoints import (
    CHECKPOINT_MODEL,
    checkpoint_history,
    checkpoint_step,
    incomplete_reason,
    optimizer_state,
    save_checkpoint,
)
from serendipity.mllm.curves import write_curves
from serendipity.mllm.data import (
    FinetuneData,
    SftExample,
    build_finetune_data,
    training_batch,
    write_quarantine,
)
from serendipity.mllm.metrics import evaluate_model
from serendipity.mllm.model import load_model

log = logging.getLogger(__name__)


def _model_for_training(base_dir: str, resume_dir: Path | None, lora: bool) -> tuple[Any, Any]:
    if resume_dir is None or lora:
        model, processor = load_model(base_dir)
    else:
        model, processor = load_model(resume_dir / CHECKPOINT_MODEL)
    if lora:
        from peft import LoraConfig, PeftModel, get_peft_model

        if resume_dir is not None:
            model = PeftModel.from_pretrained(model, resume_dir / CHECKPOINT_MODEL, is_trainable=True)
        else:
            model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    model.train()
    return model, processor


def batch_indices(size: int, batch_size: int, seed: int, rank: int, step: int) -> np.ndarray:
    """The examples of one worker's batch at ``step``: a seeded draw, so a resumed run repeats it."""
    rng = np.random.default_rng([seed, rank, step])
    return rng.choice(size, size=min(batch_size, size), replace=False)


def evaluate_validation(
    model: Any, processor: Any, data: FinetuneData, config: PipelineConfig
) -> dict[str, float]:
    """Match rate, recall and recall@k on the held-out items, with the config's prompt and beams."""
    result = evaluate_model(
        model,
        processor,
        data.validation_items,
        data.validation_labels,
        data.tree,
        style=config.mllm.prompt_style,
        level=config.mining.level,
        num_beams=config.mllm.num_beams,
        batch_size=config.mllm.eval_batch_size,
    )
    return {k: float(v) for k, v in result.as_dict().items()}


def training_optimizer(model: Any, learning_rate: float) -> Any:
    """AdamW over the trainable parameters (all of them, or the LoRA adapters)."""
    import torch

    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate)


def train_steps(
    model: Any,
    processor: Any,
    optimizer: Any,
    examples: Sequence[SftExample],
    *,
    device: Any,
    seed: int,
    batch_size: int,
    max_steps: int,
    eval_every: int,
    on_evaluation: Callable[[int, float], None],
    rank: int = 0,
    start_step: int = 0,
) -> None:
    """Train from ``start_step`` to ``max_steps`` on seeded batches of ``examples`` (see ``batch_indices``).

    After every ``eval_every``-th step and after the last one, ``on_evaluation(step, loss)`` gets the
    mean training loss of the steps since the previous call. Ray-free: the Ray Train worker and the
    in-process ablation runner (bench/ablation_in_process.py) share it.
    """
    window_losses: list[float] = []
    for step in range(start_step + 1, max_steps + 1):
        indices = batch_indices(len(examples), batch_size, seed, rank, step - 1)
        batch = training_batch(processor, [examples[i] for i in indices])
        loss = model(**{key: value.to(device) for key, value in batch.items()}).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        window_losses.append(float(loss.detach()))
        if step % eval_every == 0 or step == max_steps:
            on_evaluation(step, float(np.mean(window_losses)))
            window_losses = []


def _resume_dir(loop_config: dict[str, Any]) -> Path | None:
    """The checkpoint to resume from: Ray Train's (after a worker failure), else the driver's.

    Ray's checkpoint is checked like the driver's (see ``incomplete_reason``); an incomplete one is skipped.
    """
    import ray.train

    ray_checkpoint = ray.train.get_checkpoint()
    if ray_checkpoint is not None:
        directory = Path(ray_checkpoint.to_directory())
        if (reason := incomplete_reason(directory)) is None:
            return directory
        log.warning("skipping Ray Train's incomplete checkpoint %s: %s", directory, reason)
    return Path(loop_config["resume_from"]) if loop_config.get("resume_from") else None


@dataclass
class _WorkerRun:
    """One Ray Train worker's training state, reported (and on rank 0 evaluated) at each evaluation."""

    config: PipelineConfig
    rank: int
    model: Any
    processor: Any
    optimizer: Any
    data: FinetuneData
    base_model_dir: str
    history: list[dict[str, float]] = field(default_factory=list)

    def restore(self, resume_dir: Path) -> int:
        """Load the optimizer state and history of a checkpoint; the step to continue from."""
        self.optimizer.load_state_dict(optimizer_state(resume_dir))
        self.history = checkpoint_history(resume_dir)
        return checkpoint_step(resume_dir)

    def report(self, step: int, loss: float) -> None:
        """Every rank reports; rank 0 adds the validation metrics, the curves and a checkpoint."""
        import ray.train

        metrics: dict[str, float] = {"step": step, "loss": loss}
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if self.rank == 0:
                unwrapped = getattr(self.model, "module", self.model)
                metrics.update(evaluate_validation(unwrapped, self.processor, self.data, self.config))
                self.history.append(metrics)
                write_curves(self.history, WorkLayout.of(self.config).finetune_dir)
                save_checkpoint(
                    Path(tmp),
                    unwrapped,
                    self.processor,
                    self.optimizer,
                    step,
                    self.history,
                    self.base_model_dir,
                )
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)


def finetune_worker(loop_config: dict[str, Any]) -> None:
    """``train_loop_per_worker`` of the fine-tuning TorchTrainer."""
    import ray.train
    import ray.train.torch
    import torch

    config = PipelineConfig.model_validate(loop_config["config"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    resume_dir = _resume_dir(loop_config)
    torch.manual_seed(config.mllm.seed + rank)
    model, processor = _model_for_training(loop_config["base_model_dir"], resume_dir, config.mllm.lora)
    data = build_finetune_data(config, processor)
    if rank == 0:
        write_quarantine(data.quarantined, WorkLayout.of(config).finetune_quarantine_path)
    # Text-only batches leave the vision tower unused, which DDP must be told about.
    model = ray.train.torch.prepare_model(
        model, parallel_strategy_kwargs={"find_unused_parameters": world > 1}
    )
    optimizer = training_optimizer(model, config.mllm.learning_rate)
    run = _WorkerRun(config, rank, model, processor, optimizer, data, loop_config["base_model_dir"])
    start_step = run.restore(resume_dir) if resume_dir is not None else 0
    train_steps(
        model,
        processor,
        optimizer,
        data.train[rank::world],
        device=ray.train.torch.get_device(),
        seed=config.mllm.seed,
        batch_size=max(1, config.mllm.batch_size // world),
        max_steps=config.mllm.max_steps,
        eval_every=config.mllm.eval_every,
        on_evaluation=run.report,
        rank=rank,
        start_step=start_step,
    )

"""The Ray Train worker loop: data-parallel supervised fine-tuning with periodic evaluation and checkpoints.

Each worker trains on its shard of the examples (DDP when there are several); rank 0 evaluates match
rate and recall on the held-out items every ``eval_every`` steps, writes the curves and reports a
checkpoint (weights or LoRA adapter + optimizer state). A restarted run resumes from the checkpoint.
The training steps themselves (``steps.train_steps``) need no Ray: the in-process runners use them too.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serendipity.config import PipelineConfig
from serendipity.layout import WorkLayout
from serendipity.logs import ProgressLog
from serendipity.mllm.checkpoints import (
    CHECKPOINT_MODEL,
    checkpoint_history,
    checkpoint_step,
    incomplete_reason,
    optimizer_state,
    save_checkpoint,
)
from serendipity.mllm.curves import write_curves
from serendipity.mllm.data import FinetuneData, build_finetune_data, write_quarantine
from serendipity.mllm.metrics import evaluate_model
from serendipity.mllm.model import load_model
from serendipity.mllm.steps import longest_sequence, train_steps, training_optimizer

__all__ = ["evaluate_validation", "finetune_worker", "train_steps", "training_optimizer"]

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
    worker_losses: list[float] = field(default_factory=list)
    progress: ProgressLog | None = None  # rank 0's line per evaluation: step/total, rate, ETA

    def keep_worker_losses(self, losses: list[float]) -> None:
        self.worker_losses = losses

    def restore(self, resume_dir: Path) -> int:
        """Load the optimizer state and history of a checkpoint; the step to continue from."""
        self.optimizer.load_state_dict(optimizer_state(resume_dir))
        self.history = checkpoint_history(resume_dir)
        return checkpoint_step(resume_dir)

    def report(self, step: int, loss: float) -> None:
        """Every rank reports; rank 0 adds the validation metrics, the curves and a checkpoint."""
        import ray.train

        metrics: dict[str, float] = {"step": step, "loss": loss}
        if len(self.worker_losses) > 1:
            metrics.update({f"loss_worker_{rank}": value for rank, value in enumerate(self.worker_losses)})
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
                if self.progress is not None:
                    self.progress.update(step, _progress_detail(metrics))
            ray.train.report(metrics, checkpoint=checkpoint)


def _progress_detail(metrics: dict[str, float]) -> str:
    shown = {"loss": "loss", "match_rate": "match rate", "recall": "recall"}
    return ", ".join(f"{label} {metrics[key]:.3f}" for key, label in shown.items() if key in metrics)


def finetune_worker(loop_config: dict[str, Any]) -> None:
    """``train_loop_per_worker`` of the fine-tuning TorchTrainer."""
    import ray.train
    import ray.train.torch
    import torch

    from serendipity.mllm.precision import check_training_memory, resolve_precision

    config = PipelineConfig.model_validate(loop_config["config"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    resume_dir = _resume_dir(loop_config)
    torch.manual_seed(config.mllm.seed + rank)
    model, processor = _model_for_training(loop_config["base_model_dir"], resume_dir, config.mllm.lora)
    data = build_finetune_data(config, processor)
    if rank == 0:
        write_quarantine(data.quarantined, WorkLayout.of(config).finetune_quarantine_path)
    device = ray.train.torch.get_device()
    precision = resolve_precision(config.mllm.precision, str(device))
    if device.type == "cuda":
        per_worker = -(-config.mllm.batch_size // world)
        check_training_memory(
            model,
            batch_size=config.mllm.batch_size,
            num_workers=world,
            sequence_length=longest_sequence(processor, data.train, per_worker),
            device=device,
            precision=precision,
        )
    # Text-only batches leave the vision tower unused, which DDP must be told about.
    model = ray.train.torch.prepare_model(
        model, parallel_strategy_kwargs={"find_unused_parameters": world > 1}
    )
    optimizer = training_optimizer(model, config.mllm.learning_rate)
    run = _WorkerRun(config, rank, model, processor, optimizer, data, loop_config["base_model_dir"])
    start_step = run.restore(resume_dir) if resume_dir is not None else 0
    if rank == 0:
        run.progress = ProgressLog(log, "fine-tuning step", config.mllm.max_steps, "steps", start=start_step)
    log.info("worker %d/%d trains on %s in %s", rank, world, device, precision)
    train_steps(
        model,
        processor,
        optimizer,
        data.train,
        device=device,
        seed=config.mllm.seed,
        batch_size=config.mllm.batch_size,
        max_steps=config.mllm.max_steps,
        eval_every=config.mllm.eval_every,
        on_evaluation=run.report,
        rank=rank,
        world_size=world,
        precision=precision,
        start_step=start_step,
        on_worker_losses=run.keep_worker_losses,
    )

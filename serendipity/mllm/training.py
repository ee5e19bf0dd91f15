"""The Ray Train worker loop: data-parallel supervised fine-tuning with periodic evaluation and checkpoints.

Each worker trains on its shard of the examples (DDP when there are several); rank 0 evaluates match
rate and recall on the held-out items every ``eval_every`` steps, writes the curves and reports a
checkpoint (weights or LoRA adapter + optimizer state). A restarted run resumes from the checkpoint.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from serendipity.config import PipelineConfig
from serendipity.layout import WorkLayout
from serendipity.mllm.curves import write_curves
from serendipity.mllm.data import FinetuneData, build_finetune_data, training_batch, write_quarantine
from serendipity.mllm.metrics import evaluate_model
from serendipity.mllm.model import load_model

CHECKPOINT_MODEL = "model"
CHECKPOINT_STATE = "state.pt"
CHECKPOINT_INFO = "serendipity_checkpoint.json"


def checkpoint_step(checkpoint_dir: str | Path) -> int:
    return int(json.loads((Path(checkpoint_dir) / CHECKPOINT_INFO).read_text())["step"])


def latest_checkpoint(root: str | Path) -> Path | None:
    """The checkpoint with the highest step anywhere under ``root`` (Ray Train's storage path)."""
    found = [info.parent for info in Path(root).glob(f"**/{CHECKPOINT_INFO}")]
    return max(found, key=checkpoint_step) if found else None


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


def _save_checkpoint(
    directory: Path, model: Any, processor: Any, optimizer: Any, step: int, history: list[dict], base: str
) -> None:
    import torch

    model.save_pretrained(directory / CHECKPOINT_MODEL)
    processor.save_pretrained(directory / CHECKPOINT_MODEL)
    torch.save({"optimizer": optimizer.state_dict(), "history": history}, directory / CHECKPOINT_STATE)
    (directory / CHECKPOINT_INFO).write_text(json.dumps({"step": step, "base_model_dir": base}))


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


def finetune_worker(loop_config: dict[str, Any]) -> None:
    """``train_loop_per_worker`` of the fine-tuning TorchTrainer."""
    import ray.train
    import ray.train.torch
    import torch

    config = PipelineConfig.model_validate(loop_config["config"])
    layout = WorkLayout.of(config)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    ray_checkpoint = ray.train.get_checkpoint()
    resume_dir = Path(ray_checkpoint.to_directory()) if ray_checkpoint is not None else None
    if resume_dir is None and loop_config.get("resume_from"):
        resume_dir = Path(loop_config["resume_from"])
    torch.manual_seed(config.mllm.seed + rank)

    model, processor = _model_for_training(loop_config["base_model_dir"], resume_dir, config.mllm.lora)
    data = build_finetune_data(config, processor)
    if rank == 0:
        write_quarantine(data.quarantined, layout.finetune_dir / "quarantine.parquet")
    shard = data.train[rank::world]
    # Text-only batches leave the vision tower unused, which DDP must be told about.
    model = ray.train.torch.prepare_model(
        model, parallel_strategy_kwargs={"find_unused_parameters": world > 1}
    )
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.mllm.learning_rate
    )
    step, history = 0, []
    if resume_dir is not None:
        state = torch.load(resume_dir / CHECKPOINT_STATE, weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        step, history = checkpoint_step(resume_dir), state["history"]
    device = ray.train.torch.get_device()
    per_worker_batch = max(1, config.mllm.batch_size // world)
    window_losses: list[float] = []
    while step < config.mllm.max_steps:
        indices = batch_indices(len(shard), per_worker_batch, config.mllm.seed, rank, step)
        batch = training_batch(processor, [shard[i] for i in indices])
        loss = model(**{key: value.to(device) for key, value in batch.items()}).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        window_losses.append(float(loss.detach()))
        if step % config.mllm.eval_every and step < config.mllm.max_steps:
            continue
        metrics: dict[str, float] = {"step": step, "loss": float(np.mean(window_losses))}
        window_losses = []
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                unwrapped = getattr(model, "module", model)
                metrics.update(evaluate_validation(unwrapped, processor, data, config))
                history.append(metrics)
                write_curves(history, layout.finetune_dir)
                _save_checkpoint(
                    Path(tmp), unwrapped, processor, optimizer, step, history, loop_config["base_model_dir"]
                )
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)


def merged_model_from_checkpoint(checkpoint_dir: str | Path, lora: bool) -> tuple[Any, Any]:
    """The trained model of a checkpoint as a plain HF model (LoRA adapters merged into the base)."""
    checkpoint_dir = Path(checkpoint_dir)
    if not lora:
        return load_model(checkpoint_dir / CHECKPOINT_MODEL)
    from peft import PeftModel

    base = json.loads((checkpoint_dir / CHECKPOINT_INFO).read_text())["base_model_dir"]
    model, processor = load_model(base)
    model = PeftModel.from_pretrained(model, checkpoint_dir / CHECKPOINT_MODEL).merge_and_unload()
    return model, processor


def checkpoint_history(checkpoint_dir: str | Path) -> list[dict[str, float]]:
    import torch

    return list(torch.load(Path(checkpoint_dir) / CHECKPOINT_STATE, weights_only=False)["history"])

"""Driver side of fine-tuning: base model, Ray Train TorchTrainer, resume, publish, non-LLM baseline."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from serendipity.config import PipelineConfig
from serendipity.io import write_json_atomic
from serendipity.layout import LATEST_MODEL_POINTER, WorkLayout
from serendipity.mllm.data import load_items, load_sft, load_tree
from serendipity.mllm.metrics import best_sibling_by_satisfaction
from serendipity.mllm.model import MODEL_METADATA_FILE, publish_model, resolve_model_dir
from serendipity.mllm.training import (
    checkpoint_history,
    checkpoint_step,
    finetune_worker,
    latest_checkpoint,
    merged_model_from_checkpoint,
)
from serendipity.schema import CLUSTERS_FILE, SPLIT_TRAIN, SPLIT_VALIDATION, level_column

RUN_NAME = "ray_train"
log = logging.getLogger(__name__)


def ensure_base_model(config: PipelineConfig) -> Path:
    """The base model directory; the tiny default is built there first when it does not exist yet."""
    from serendipity.mllm.tiny import init_tiny_model

    base = resolve_model_dir(config.resolve(config.mllm.model_dir))
    if not base.exists():
        catalog = WorkLayout.of(config).catalog_dir()
        source = catalog if (catalog / CLUSTERS_FILE).exists() else config.dataset_dir
        log.info("building the tiny %s model at %s", config.mllm.architecture, base)
        init_tiny_model(
            base,
            source,
            architecture=config.mllm.architecture,
            image_size=config.mllm.image_size,
            seed=config.mllm.seed,
        )
    return base


def best_sibling_guess_recall(config: PipelineConfig) -> dict[str, float | int]:
    """Recall of the best non-LLM guess on the validation items (see ``best_sibling_by_satisfaction``)."""
    layout, level = WorkLayout.of(config), config.mining.level
    tree, sft = load_tree(layout), load_sft(layout)
    column = level_column(level)
    items = load_items(layout, sft["context_item_id"].unique().tolist())
    own_cluster = items[column].astype("int64")
    train_ids = set(sft.loc[sft["split"] == SPLIT_TRAIN, "context_item_id"])
    if layout.pairs_path.exists():
        pairs = pq.read_table(
            layout.pairs_path, columns=["context_item_id", "context_cluster", "next_cluster", "satisfaction"]
        ).to_pandas()
        pairs = pairs[pairs["context_item_id"].isin(train_ids)]
        source = str(layout.pairs_path)
    else:
        train = sft[(sft["split"] == SPLIT_TRAIN) & sft["context_item_id"].isin(own_cluster.index)]
        pairs = pd.DataFrame(
            {
                "context_cluster": own_cluster.loc[train["context_item_id"]].to_numpy(),
                "next_cluster": train["target_cluster"].to_numpy(),
                "satisfaction": train["score"].to_numpy(),
            }
        )
        source = str(layout.sft_path)
    guess = best_sibling_by_satisfaction(pairs, tree, level)
    validation = sft[(sft["split"] == SPLIT_VALIDATION) & sft["context_item_id"].isin(own_cluster.index)]
    labels = validation.groupby("context_item_id")["target_cluster"].agg(set)
    hits = sum(guess.get(int(own_cluster.loc[item])) in targets for item, targets in labels.items())
    return {
        "items": len(labels),
        "recall": hits / len(labels) if len(labels) else 0.0,
        "pairs_source": source,
    }


def _run_trainer(config: PipelineConfig, base: Path, resume_from: Path | None) -> None:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(
        finetune_worker,
        train_loop_config={
            "config": config.model_dump(mode="json"),
            "base_model_dir": str(base),
            "resume_from": str(resume_from) if resume_from else None,
        },
        scaling_config=ScalingConfig(num_workers=config.mllm.num_workers, use_gpu=config.mllm.use_gpu),
        run_config=RunConfig(
            storage_path=str(WorkLayout.of(config).finetune_dir),
            name=RUN_NAME,
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=config.mllm.max_failures),
        ),
    )
    trainer.fit()


def _published_from(models_dir: Path, metadata: dict[str, Any]) -> Path | None:
    """The latest published model when it already holds this checkpoint (re-runs publish nothing new)."""
    if not (models_dir / LATEST_MODEL_POINTER).is_file():
        return None
    latest = resolve_model_dir(models_dir)
    info = latest / MODEL_METADATA_FILE
    if info.is_file() and json.loads(info.read_text()) == json.loads(json.dumps(metadata, default=str)):
        return latest
    return None


def run_finetune(config: PipelineConfig, *, fresh: bool = False) -> dict[str, Any]:
    """Fine-tune (resuming from the last checkpoint unless ``fresh``), publish the model, write a summary."""
    import ray

    layout = WorkLayout.of(config)
    run_dir = layout.finetune_dir / RUN_NAME
    if fresh:
        shutil.rmtree(run_dir, ignore_errors=True)
    base = ensure_base_model(config)
    resume_from = latest_checkpoint(run_dir) if run_dir.exists() else None
    start_step = checkpoint_step(resume_from) if resume_from else 0
    if start_step < config.mllm.max_steps:
        if not ray.is_initialized():
            ray.init(configure_logging=False)
        _run_trainer(config, base, resume_from)
    final = latest_checkpoint(run_dir)
    if final is None:
        raise RuntimeError(f"fine-tuning wrote no checkpoint under {run_dir}")
    history = checkpoint_history(final)
    baseline = best_sibling_guess_recall(config)
    metadata = {
        "base_model_dir": str(base),
        "steps": checkpoint_step(final),
        "prompt_style": config.mllm.prompt_style,
        "num_frames": config.mllm.num_frames,
        "level": config.mining.level,
        "lora": config.mllm.lora,
        "final_metrics": history[-1] if history else {},
        "checkpoint": str(final),
    }
    version_dir = _published_from(layout.models_dir, metadata)
    if version_dir is None:
        model, processor = merged_model_from_checkpoint(final, config.mllm.lora)
        version_dir = publish_model(model, processor, layout.models_dir, metadata)
    summary = {
        **metadata,
        "resumed_from_step": start_step,
        "model_dir": str(version_dir),
        "model_version": version_dir.name,
        "non_llm_baseline": baseline,
        "history": history,
    }
    write_json_atomic(summary, layout.finetune_summary_path)
    log.info(
        "fine-tuned %s steps: %s; best non-LLM guess recall %.3f",
        summary["steps"],
        history[-1] if history else {},
        baseline["recall"],
    )
    return summary

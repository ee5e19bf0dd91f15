"""Training the sequence model: the loop (sampled softmax), the Ray Train worker, and the driver.

The driver (``train_and_publish_retriever``) runs a Ray Train TorchTrainer (one CPU worker by default); the
worker builds the point-in-time training data itself from the config, trains, and reports the model
as a checkpoint. The driver then evaluates it on the holdout, builds the per-cluster index from its
item embeddings, and writes everything to ``WorkLayout.retriever_dir`` atomically.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from serendipity.config import PipelineConfig, RetrievalConfig
from serendipity.retrieval.data import TrainingData, load_training_data, training_windows
from serendipity.retrieval.model import PADDING_INDEX, SASRec

log = logging.getLogger(__name__)
RUN_NAME = "sasrec"


def build_model(num_items: int, settings: RetrievalConfig) -> SASRec:
    return SASRec(
        num_items,
        embedding_dim=settings.embedding_dim,
        max_length=settings.max_history,
        num_layers=settings.num_layers,
        num_heads=settings.num_heads,
        dropout=settings.dropout,
    )


def sampled_softmax_loss(
    hidden: torch.Tensor, targets: torch.Tensor, item_embedding: torch.Tensor, num_negatives: int
) -> torch.Tensor:
    """Cross-entropy of each target against ``num_negatives`` uniform negatives shared by the batch.

    ``hidden`` is (n, dim) and ``targets`` (n,) item indices >= 1; a negative equal to a row's target
    is masked out for that row.
    """
    num_items = item_embedding.shape[0] - 1
    negatives = torch.randint(1, num_items + 1, (num_negatives,), device=hidden.device)
    positive_logits = (hidden * item_embedding[targets]).sum(-1, keepdim=True)
    negative_logits = hidden @ item_embedding[negatives].T
    negative_logits = negative_logits.masked_fill(targets[:, None] == negatives[None], float("-inf"))
    logits = torch.cat([positive_logits, negative_logits], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long, device=hidden.device))


def train_epoch(
    model: SASRec,
    forward: Callable[[torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    inputs: np.ndarray,
    targets: np.ndarray,
    settings: RetrievalConfig,
    generator: np.random.Generator,
) -> float:
    """One pass over the windows in a random order; returns the mean loss."""
    model.train()
    order = generator.permutation(len(inputs))
    losses = []
    for start in range(0, len(order), settings.batch_size):
        rows = order[start : start + settings.batch_size]
        batch_inputs = torch.from_numpy(inputs[rows])
        batch_targets = torch.from_numpy(targets[rows])
        hidden = forward(batch_inputs)
        keep = (batch_inputs != PADDING_INDEX) & (batch_targets != PADDING_INDEX)
        loss = sampled_softmax_loss(
            hidden[keep], batch_targets[keep], model.item_embedding.weight, settings.num_negatives
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return float(np.mean(losses)) if losses else float("nan")


def fit_sasrec(
    data: TrainingData,
    settings: RetrievalConfig,
    prepare: Callable[[nn.Module], nn.Module] | None = None,
    rank: int = 0,
) -> tuple[SASRec, list[dict[str, float]]]:
    """Train a fresh model on ``data.train_sequences``; returns it with the per-epoch losses.

    ``prepare`` wraps the model for data-parallel training (e.g. Ray Train's ``prepare_model``);
    ``rank`` varies the batch order between workers.
    """
    torch.manual_seed(settings.seed)
    generator = np.random.default_rng([settings.seed, rank])
    inputs, targets = training_windows(data.train_sequences, settings.max_history)
    model = build_model(len(data.vocabulary), settings)
    forward = prepare(model) if prepare else model
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    history = []
    for epoch in range(settings.epochs):
        loss = train_epoch(model, forward, optimizer, inputs, targets, settings, generator)
        history.append({"epoch": epoch + 1, "loss": loss})
        log.info("epoch %d: loss %.4f", epoch + 1, loss)
    return model.eval(), history


def retriever_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train worker: build the data, train, and report the model directory as a checkpoint."""
    import ray.train
    import ray.train.torch

    config = PipelineConfig.model_validate(loop_config["config"])
    data = load_training_data(config)
    rank = ray.train.get_context().get_world_rank()
    prepare = ray.train.torch.prepare_model if ray.train.get_context().get_world_size() > 1 else None
    model, history = fit_sasrec(data, config.retrieval, prepare=prepare, rank=rank)
    metrics = {"loss": history[-1]["loss"], "epochs": len(history)}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if rank == 0:
            model.save(Path(tmp) / "model")
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(metrics, checkpoint=checkpoint)


def train_with_ray(config: PipelineConfig) -> SASRec:
    """Fit the model in a TorchTrainer (``retrieval.num_workers`` workers) and load the result."""
    from ray.train import LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from serendipity.layout import WorkLayout
    from serendipity.logs import ray_train_log_level

    storage = WorkLayout.of(config).retriever_train_dir
    # Every run trains from scratch: a previous run's state under the same name must not be resumed.
    shutil.rmtree(storage / RUN_NAME, ignore_errors=True)
    trainer = TorchTrainer(
        retriever_worker,
        train_loop_config={"config": config.model_dump(mode="json")},
        scaling_config=ScalingConfig(
            num_workers=config.retrieval.num_workers,
            use_gpu=config.retrieval.use_gpu,
            placement_strategy=config.ray.train_placement,
        ),
        run_config=RunConfig(
            storage_path=str(storage),
            name=RUN_NAME,
            logging_config=LoggingConfig(log_level=ray_train_log_level()),
        ),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError("the retriever training run reported no checkpoint")
    with result.checkpoint.as_directory() as directory:
        return SASRec.load(Path(directory) / "model")

"""The training steps, without Ray: seeded global batches, each worker's share, DDP-exact loss weighting.

The Ray Train worker (``training.py``), the in-process ablation runner and ``bench/gpu_check.py`` share
them, so the in-process path runs the very steps Ray Train runs, on a machine without Ray too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from serendipity.mllm.data import IGNORE_INDEX, SftExample, training_batch


def batch_indices(size: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """The examples of the global batch at ``step``: a seeded draw, so a resumed run repeats it."""
    rng = np.random.default_rng([seed, 0, step])
    return rng.choice(size, size=min(batch_size, size), replace=False)


def worker_share(indices: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """One worker's share of a global batch: every ``world_size``-th example from ``rank``."""
    if len(indices) < world_size:
        raise ValueError(
            f"a global batch of {len(indices)} examples cannot feed {world_size} workers: "
            f"raise mllm.batch_size to at least mllm.num_workers"
        )
    return indices[rank::world_size]


def label_tokens(labels: Any) -> int:
    """Tokens a causal LM loss averages over: labels after the shift that are not ignored."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def training_optimizer(model: Any, learning_rate: float) -> Any:
    """AdamW over the trainable parameters (all of them, or the LoRA adapters)."""
    import torch

    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate)


def _sum_over_workers(values: Any, world_size: int) -> Any:
    if world_size > 1:
        import torch.distributed as dist

        dist.all_reduce(values)
    return values


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
    world_size: int = 1,
    precision: str = "fp32",
    start_step: int = 0,
    on_worker_losses: Callable[[list[float]], None] | None = None,
) -> None:
    """Train from ``start_step`` to ``max_steps`` on seeded global batches of ``examples``.

    Every worker draws the same global batch (``batch_indices``) and trains on its share of it. Each
    worker's mean token loss is weighted by its share of the batch's label tokens, so the gradient DDP
    averages is the gradient of the global batch's mean token loss, as on one worker. After every
    ``eval_every``-th step and after the last one, ``on_worker_losses`` gets each worker's mean loss and
    ``on_evaluation(step, loss)`` the mean global-batch loss of the steps since the previous call.
    Ray-free: the Ray Train worker, the in-process ablation runner and ``bench/gpu_check.py`` share it.
    """
    import torch

    from serendipity.mllm.precision import autocast, gradient_scaler

    scaler = gradient_scaler(device, precision)
    window = torch.zeros(world_size + 1, dtype=torch.float64)  # per-worker losses, then the global one
    window_steps = 0
    for step in range(start_step + 1, max_steps + 1):
        indices = worker_share(batch_indices(len(examples), batch_size, seed, step - 1), rank, world_size)
        batch = {
            k: v.to(device) for k, v in training_batch(processor, [examples[i] for i in indices]).items()
        }
        with autocast(device, precision):
            loss = model(**batch).loss
        # Label tokens and loss of every worker, gathered in one all-reduce.
        shares = torch.zeros(2 * world_size, dtype=torch.float64, device=loss.device)
        shares[rank] = label_tokens(batch["labels"])
        shares[world_size + rank] = float(loss.detach())
        shares = _sum_over_workers(shares, world_size).cpu()
        tokens, losses = shares[:world_size], shares[world_size:]
        weight = float(tokens[rank] * world_size / tokens.sum())
        optimizer.zero_grad()
        scaled = loss * weight if weight != 1.0 else loss
        if scaler is not None:
            scaler.scale(scaled).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            scaled.backward()
            optimizer.step()
        window[:world_size] += losses
        window[world_size] += float((tokens * losses).sum() / tokens.sum())
        window_steps += 1
        if step % eval_every == 0 or step == max_steps:
            if on_worker_losses is not None:
                on_worker_losses((window[:world_size] / window_steps).tolist())
            on_evaluation(step, float(window[world_size] / window_steps))
            window.zero_()
            window_steps = 0


def longest_sequence(processor: Any, examples: Sequence[SftExample], batch_size: int) -> int:
    """Tokens in a batch of the ``batch_size`` longest examples (by text length): the memory check's input."""
    longest = sorted(examples, key=lambda e: len(e.prompt.text) + len(e.target))[-batch_size:]
    return int(training_batch(processor, longest)["input_ids"].shape[1]) if longest else 0

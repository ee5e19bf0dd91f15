"""Seconds per fine-tuning step on CPU for the tiny instance of each VLM family.

Generates the test world (configs/test.yaml, with media), builds each family's tiny model on its texts
(``serendipity.mllm.tiny``), and times ``train_steps`` (the training loop of Ray Train and the in-process
runner) on batches of video-CoT prompts (``--frames`` frames per item, one video for video-taking
families) mixed with description recitations, after one warm-up step. Families that need torchvision
(native video) are reported as skipped where it does not work. Prints and saves
``bench/results/vlm_families.json`` with the machine's load average at start and at the end. Never asserts.
Usage: ``flock /tmp/serendipity-tests.lock .venv/bin/python -m bench.vlm_families --steps 5``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from devtools import REPO
from serendipity.config import load_config
from serendipity.io import write_json_atomic
from serendipity.mllm.data import SftExample, description_examples
from serendipity.mllm.prompts import PromptStyle, build_prompt, item_media_from_row, target_text
from serendipity.mllm.tiny import FAMILIES, build_tiny_model, dataset_texts
from serendipity.mllm.training import train_steps, training_optimizer
from serendipity.tree import ClusterTree

RESULTS = REPO / "bench" / "results" / "vlm_families.json"
LEVEL = 3


def _examples(dataset: Path, tree: ClusterTree, processor: Any, frames: int, count: int) -> list[SftExample]:
    items = pd.read_parquet(dataset / "items.parquet")
    items = items[items["video_path"].notna()].head(count)
    examples = []
    for row in items.to_dict("records"):
        media = item_media_from_row(row, dataset, PromptStyle.VIDEO_COT, frames, 32)
        own = media.cluster_at(LEVEL)
        target = (tree.siblings(own) or [own])[0]
        prompt = build_prompt(media, PromptStyle.VIDEO_COT, tree, LEVEL, processor)
        examples.append(
            SftExample(prompt, target_text(prompt.style, tree, own, target), media.item_id, target)
        )
    return examples + description_examples(tree, processor)[:count]


def _seconds_per_step(
    name: str, dataset: Path, tree: ClusterTree, args: argparse.Namespace
) -> dict[str, Any]:
    try:
        model, processor = build_tiny_model(dataset_texts(dataset), architecture=name)  # type: ignore[arg-type]
    except RuntimeError as error:  # a video family without a working torchvision
        return {"skipped": str(error)}
    examples = _examples(dataset, tree, processor, args.frames, args.batch_size)
    optimizer = training_optimizer(model, 1e-3)
    losses: list[float] = []

    def run(start: int, stop: int) -> float:
        began = time.perf_counter()
        train_steps(
            model,
            processor,
            optimizer,
            examples,
            device="cpu",
            seed=0,
            batch_size=args.batch_size,
            max_steps=stop,
            eval_every=1,
            on_evaluation=lambda _step, loss: losses.append(loss),
            start_step=start,
        )
        return time.perf_counter() - began

    model.train()
    run(0, 1)  # warm-up
    elapsed = run(1, 1 + args.steps)
    return {
        "seconds_per_step": round(elapsed / args.steps, 4),
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab": len(processor.tokenizer),
        "processor": type(processor).__name__,
        "model": type(model).__name__,
        "native_video": any(e.prompt.as_video for e in examples),
        "first_loss": round(losses[0], 3),
        "last_loss": round(losses[-1], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    args = parser.parse_args()
    load_start = os.getloadavg()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        from serendipity.world import generate_world

        dataset = Path(tmp) / "dataset"
        generate_world(dataset, load_config(REPO / "configs" / "test.yaml").world)
        tree = ClusterTree.load(dataset)
        families = {name: _seconds_per_step(name, dataset, tree, args) for name in args.families}
    result = {
        "what": "seconds per training step (train_steps, CPU), tiny instance of each family",
        "batch_size": args.batch_size,
        "frames": args.frames,
        "steps_timed": args.steps,
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_at_start": [round(x, 2) for x in load_start],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "under_load": load_start[0] > 1.0,
        "families": families,
    }
    write_json_atomic(result, RESULTS)
    for name, row in families.items():
        print(f"{name:16s} {row.get('seconds_per_step', row.get('skipped'))}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

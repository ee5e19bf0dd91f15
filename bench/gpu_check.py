"""The GPU operating point, in-process and without Ray: training steps, the batch predictor and faiss.

On whatever device exists (a CUDA GPU, else the CPU) it runs, with the library's own code:
``train_steps`` (the Ray Train worker's steps) for a few steps in the auto precision (bf16 or fp16 on a
GPU), the ``MllmPredictor`` of batch inference (constrained beam search) with its start-up memory check,
and the per-cluster faiss index on the GPU when faiss-gpu sees one (checked against the CPU's answers).
Prints and saves JSON figures: device name, dtype, seconds per step, items per second, faiss searches per
second. The model is a tiny random VLM of ``--architecture`` unless ``--model-dir`` names a real one
(with ``--model-dir`` the texts of its tokenizer must cover the synthetic tree's words).

    .venv/bin/python -m bench.gpu_check                      # on this machine's GPU, or its CPU
    .venv/bin/python -m bench.gpu_check --steps 2 --items 2  # a quick CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from devtools import REPO

RESULTS = REPO / "bench" / "results" / "gpu_check.json"
LEVEL = 3


def _tree() -> Any:
    from bench.decoding import synthetic_tree  # 100 level-3 clusters

    return synthetic_tree()


def _media(tree: Any, count: int, image_size: int) -> list[Any]:
    from serendipity.mllm.prompts import ItemMedia

    rng = np.random.default_rng(0)
    leaves = tree.at_level(4)
    return [
        ItemMedia(
            index,
            f"a video about {tree.description(leaves[index % len(leaves)])}",
            tuple(tree.path(leaves[index % len(leaves)])),
            [rng.integers(0, 255, (image_size, image_size, 3), dtype=np.uint8)],
        )
        for index in range(count)
    ]


def _examples(tree: Any, media: list[Any], processor: Any) -> list[Any]:
    from serendipity.mllm.data import SftExample
    from serendipity.mllm.generation import serendipitous_candidates
    from serendipity.mllm.prompts import PromptStyle, build_prompt, target_text

    style = PromptStyle.THUMBNAIL_COT
    examples = []
    for item in media:
        own = item.cluster_at(LEVEL)
        target = serendipitous_candidates(tree, own, LEVEL)[0]
        prompt = build_prompt(item, style, tree, LEVEL, processor)
        examples.append(SftExample(prompt, target_text(style, tree, own, target)))
    return examples


def _train(model_dir: Path, tree: Any, media: list[Any], device: str, precision: str, args: Any) -> dict:
    import torch

    from serendipity.mllm.model import load_model
    from serendipity.mllm.steps import train_steps, training_optimizer

    model, processor = load_model(model_dir, device=device)
    model.train()
    examples = _examples(tree, media, processor)
    losses: list[float] = []
    clock = {"start": 0.0}

    def start_clock(_: int, loss: float) -> None:  # after the warm-up step
        losses.append(loss)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        clock["start"] = time.perf_counter()

    common = {"device": device, "seed": 0, "batch_size": args.batch_size, "precision": precision}
    optimizer = training_optimizer(model, 1e-3)
    train_steps(
        model, processor, optimizer, examples, max_steps=1, eval_every=1, on_evaluation=start_clock, **common
    )
    train_steps(
        model, processor, optimizer, examples, max_steps=args.steps + 1, eval_every=args.steps + 1,
        on_evaluation=lambda _, loss: losses.append(loss), start_step=1, **common,
    )  # fmt: skip
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - clock["start"]
    peak = torch.cuda.max_memory_allocated() / 1024**3 if device.startswith("cuda") else None
    return {"s_per_step": round(seconds / args.steps, 4), "losses": losses, "peak_gpu_gib": peak}


def _predict(model_dir: Path, tree: Any, media: list[Any], device: str, precision: str, args: Any) -> dict:
    from serendipity.inference.predict import check_gpu_memory
    from serendipity.mllm.precision import torch_dtype
    from serendipity.mllm.predictor import MllmPredictor

    predictor = MllmPredictor(
        model_dir, tree, "thumbnail_cot", 1, LEVEL, constrained=True, num_beams=2, top_k=2,
        batch_size=args.batch_size, device=device if device != "cpu" else None,
        dtype=torch_dtype(precision) if device != "cpu" else None,
    )  # fmt: skip
    check_gpu_memory(predictor)
    predictor.predict(media[:1])  # warm-up
    started = time.perf_counter()
    ranked = predictor.predict(media)
    seconds = time.perf_counter() - started
    named = sum(1 for predictions in ranked for p in predictions if p.cluster_id is not None)
    return {"items": len(media), "items_per_s": round(len(media) / seconds, 3), "named_clusters": named}


def _faiss(args: Any) -> dict:
    from serendipity.retrieval.index import ClusterIndex, faiss_gpus

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.index_items, 64), dtype=np.float32)
    clusters = rng.integers(0, 100, size=args.index_items)
    index = ClusterIndex.build(np.arange(args.index_items), clusters, vectors)
    queries = rng.standard_normal((200, 64), dtype=np.float32)
    targets = [int(c) for c in rng.integers(0, 100, size=len(queries))] + [None]
    on_cpu = [index.search(q, 10, c)[0].tolist() for q, c in zip(queries, targets, strict=False)]
    index.to_gpu()
    started = time.perf_counter()
    found = [index.search(q, 10, c)[0].tolist() for q, c in zip(queries, targets, strict=False)]
    seconds = time.perf_counter() - started
    return {
        "faiss_gpus": faiss_gpus(),
        "index_device": index.device,
        "same_results_as_cpu": found == on_cpu,
        "searches_per_s": round(len(queries) / seconds, 1),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from serendipity.mllm.model import save_model
    from serendipity.mllm.precision import resolve_precision
    from serendipity.mllm.tiny import TinySize, build_tiny_model

    load_at_start = list(os.getloadavg())
    device = "cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu"
    precision = resolve_precision(args.precision, device)
    tree = _tree()
    media = _media(tree, args.items, args.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            texts = [*tree.descriptions(), *(m.title for m in media)]
            model, processor = build_tiny_model(
                texts, architecture=args.architecture, size=TinySize.for_image(args.image_size)
            )
            model_dir = save_model(model, processor, Path(tmp) / "model")
        figures = {
            "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
            "precision": precision,
            "architecture": args.architecture if args.model_dir is None else str(args.model_dir),
            "batch_size": args.batch_size,
            "training": _train(model_dir, tree, media, device, precision, args),
            "inference": _predict(model_dir, tree, media, device, precision, args),
        }
    figures["faiss"] = _faiss(args)
    figures["torch"] = torch.__version__
    figures["load_average_at_start"] = load_at_start
    figures["load_average_at_end"] = list(os.getloadavg())
    figures["under_load"] = load_at_start[0] > 1.0
    return figures


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu"), default="auto")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto")
    parser.add_argument("--architecture", default="llava")
    parser.add_argument("--model-dir", type=Path, default=None, help="a real VLM directory instead")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--index-items", type=int, default=20_000)
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    figures = run(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(figures, indent=2, default=str))
    print(json.dumps(figures, indent=2, default=str))
    return figures


if __name__ == "__main__":
    main()

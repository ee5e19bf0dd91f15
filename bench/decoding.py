"""Constrained vs free decoding time on the same batch and model; every sibling scored vs beams.

Prints and saves ``bench/results/decoding.json``: median seconds over repetitions of
``generate_answers`` with ``constrained=False`` and ``True`` (prebuilt trie, same token budget),
their ratio (target at most 1.3), the trie build time, and per setting one plain ``generate`` call
of each kind with the generated length and the constraint's own share of the time. Never asserts.
The models are tiny VLMs of each family in ``--architectures`` (``serendipity.mllm.tiny``, randomly
initialised, each with its own tokenizer kind, one image per prompt; figures per family, with
``sibling_scoring``: the teacher-forced scoring of every sibling against the constrained beam search
it replaces, target ratio at most 1.5) or, with
``--model text``, a tiny random LlamaForCausalLM with a word-level tokenizer.
Usage: ``.venv/bin/python -m bench.decoding --repeats 7 --architectures llava gemma3``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import LogitsProcessor

from serendipity.io import write_json_atomic
from serendipity.mllm.constants import ANSWER_MARKER, REASONING_MARKER
from serendipity.mllm.constrained import AnswerConstraintProcessor, DescriptionTrie
from serendipity.mllm.generation import generate_answers, serendipitous_candidates
from serendipity.tree import ClusterTree

RESULTS = Path(__file__).resolve().parent / "results" / "decoding.json"
LEVEL = 3
TOPICS = ("music", "comedy", "science", "sports")
STYLES = ("live", "classic", "modern", "amateur", "street")
FORMS = ("clips", "tutorials", "reviews", "highlights", "stories")


def synthetic_tree() -> ClusterTree:
    """4 roots, 20 level-2 and 100 level-3 clusters, one leaf under each level-3 cluster."""
    rows: list[tuple[int, int, int | None, str]] = []
    for t, topic in enumerate(TOPICS):
        rows.append((t + 1, 1, None, topic))
        for s, style in enumerate(STYLES):
            level2 = 100 + 10 * t + s
            rows.append((level2, 2, t + 1, f"{style} {topic}"))
            for f, form in enumerate(FORMS):
                level3 = 1000 + 100 * t + 10 * s + f
                rows.append((level3, 3, level2, f"{style} {topic} {form}"))
                rows.append((level3 + 10000, 4, level3, f"{style} {topic} {form} compilations"))
    return ClusterTree.from_frame(
        pd.DataFrame(rows, columns=["cluster_id", "level", "parent_id", "description"])
    )


def _text_model(tree: ClusterTree) -> tuple[Any, Any]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    special = {"pad_token": "[PAD]", "unk_token": "[UNK]", "eos_token": "[EOS]"}
    corpus = [f"{REASONING_MARKER} {d} in {d}\n{ANSWER_MARKER} {d}" for d in tree.descriptions()]
    backend = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=list(special.values())))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, padding_side="left", **special)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )  # fmt: skip
    return LlamaForCausalLM(config).eval(), tokenizer


def build_workload(
    kind: str, tree: ClusterTree, batch_size: int, architecture: str = "llava"
) -> tuple[Any, Any, dict, list[int], str, list[Any]]:
    """(model, processor, inputs, item level-3 clusters, model name, decoded items or []) for one batch
    of CoT prompts."""
    items = [tree.at_level(LEVEL)[(7 * i) % 100] for i in range(batch_size)]
    if kind == "vlm":
        from serendipity.mllm.data import generation_batch
        from serendipity.mllm.prompts import ItemMedia, PromptStyle, build_prompt
        from serendipity.mllm.tiny import build_tiny_model

        texts = tree.descriptions() + ["Title: a video"]
        model, processor = build_tiny_model(texts, architecture=architecture)  # type: ignore[arg-type]
        rng = np.random.default_rng(0)
        images = rng.integers(0, 255, (len(items), 32, 32, 3), dtype=np.uint8)
        media = [
            ItemMedia(i, "a video", tuple(tree.path(tree.children(c)[0])), [images[i]])
            for i, c in enumerate(items)
        ]
        prompts = [build_prompt(m, PromptStyle.THUMBNAIL_COT, tree, LEVEL, processor) for m in media]
        inputs = generation_batch(processor, prompts)
        return model.eval(), processor, inputs, items, type(model).__name__, media
    model, tokenizer = _text_model(tree)
    prompts = [f"{REASONING_MARKER} {tree.description(c)}" for c in items]
    return (
        model,
        tokenizer,
        dict(tokenizer(prompts, return_tensors="pt", padding=True)),
        items,
        "LlamaForCausalLM",
        [],
    )


class _TimedProcessor(LogitsProcessor):
    """Wraps the answer constraint and adds up the seconds spent inside it."""

    def __init__(self, inner: AnswerConstraintProcessor) -> None:
        self.inner = inner
        self.seconds = 0.0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        started = time.perf_counter()
        masked = self.inner(input_ids, scores)
        self.seconds += time.perf_counter() - started
        return masked


def _profile(
    model: Any,
    inputs: dict,
    trie: DescriptionTrie,
    candidates: list[list[int]] | None,
    num_beams: int,
    max_new_tokens: int,
) -> dict[str, float]:
    """One plain ``generate`` call: generated length, total seconds and the constraint's share of them."""
    timed = None
    if candidates is not None:
        timed = _TimedProcessor(
            AnswerConstraintProcessor(trie, candidates=candidates, max_new_tokens=max_new_tokens)
        )
    started = time.perf_counter()
    with torch.inference_mode():
        sequences = model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=num_beams,
            logits_processor=[timed] if timed is not None else None, eos_token_id=list(trie.eos_token_ids),
        )  # fmt: skip
    total = time.perf_counter() - started
    profile = {
        "generated_tokens": int(sequences.shape[1] - inputs["input_ids"].shape[1]),
        "total_s": round(total, 4),
    }
    if timed is not None:
        profile["processor_s"] = round(timed.seconds, 4)
        profile["processor_share"] = round(timed.seconds / total, 4)
    return profile


def _tokenizer_kind(tokenizer: Any) -> str:
    """E.g. ``BPE/ByteLevel`` or ``Unigram/Metaspace``: the model and pre-tokenizer of a fast tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return type(tokenizer).__name__
    pre = type(backend.pre_tokenizer).__name__ if backend.pre_tokenizer is not None else "none"
    return f"{type(backend.model).__name__}/{pre}"


def run_family(args: argparse.Namespace, tree: ClusterTree, architecture: str) -> dict[str, Any]:
    """The figures of one model family (or of the text model)."""
    torch.manual_seed(0)
    model, processor, inputs, items, model_name, media = build_workload(
        args.model, tree, args.batch_size, architecture
    )
    tokenizer = getattr(processor, "tokenizer", None) or processor
    started = time.perf_counter()
    trie = DescriptionTrie.for_tree(tokenizer, tree, level=LEVEL)
    trie_build_s = time.perf_counter() - started
    max_new_tokens = args.max_new_tokens or len(trie.forced_marker) + trie.max_length + 1 + 12
    candidates = [serendipitous_candidates(tree, c, LEVEL) for c in items]
    settings = []
    for num_beams in args.beams:
        timings: dict[str, list[float]] = {"free": [], "constrained": []}
        for repeat in range(args.repeats + 1):
            for mode in ("free", "constrained"):
                started = time.perf_counter()
                generate_answers(
                    model, processor, inputs, tree, constrained=mode == "constrained", num_beams=num_beams,
                    top_k=num_beams, candidates=candidates, max_new_tokens=max_new_tokens, trie=trie,
                )  # fmt: skip
                if repeat:  # the first round warms up
                    timings[mode].append(time.perf_counter() - started)
        free, constrained = statistics.median(timings["free"]), statistics.median(timings["constrained"])
        settings.append(
            {
                "num_beams": num_beams,
                "free_median_s": round(free, 4),
                "constrained_median_s": round(constrained, 4),
                "ratio_constrained_over_free": round(constrained / free, 3),
                "free_runs_s": [round(t, 4) for t in timings["free"]],
                "constrained_runs_s": [round(t, 4) for t in timings["constrained"]],
                "free_generate": _profile(model, inputs, trie, None, num_beams, max_new_tokens),
                "constrained_generate": _profile(model, inputs, trie, candidates, num_beams, max_new_tokens),
            }
        )
        ratio = settings[-1]["ratio_constrained_over_free"]
        print(
            f"{model_name} beams={num_beams}: free {free:.3f}s, constrained {constrained:.3f}s, ratio {ratio}"
        )
    return {
        "model": model_name,
        "sibling_scoring": _sibling_scoring(args, model, processor, media, tree, trie) if media else None,
        "tokenizer": _tokenizer_kind(tokenizer),
        "batch_size": args.batch_size,
        "max_new_tokens": max_new_tokens,
        "trie_descriptions": len(trie.cluster_ids),
        "trie_build_s": round(trie_build_s, 4),
        "settings": settings,
    }


def _sibling_scoring(
    args: argparse.Namespace, model: Any, processor: Any, media: list[Any], tree: ClusterTree, trie: Any
) -> dict[str, Any]:
    """Every sibling scored (greedy reasoning, then one teacher-forced row per sibling) against the
    sibling-constrained beam search inference used before (``--serving-beams`` beams, top-k of them)."""
    from serendipity.mllm.metrics import predict_serendipitous_clusters
    from serendipity.mllm.prompts import PromptStyle
    from serendipity.mllm.scoring import score_siblings

    beams, candidates = (
        args.serving_beams,
        [serendipitous_candidates(tree, m.cluster_at(LEVEL), LEVEL) for m in media],
    )
    runs: dict[str, list[float]] = {"score_all": [], "constrained_beams": []}
    for repeat in range(args.repeats + 1):
        started = time.perf_counter()
        style, size = PromptStyle.THUMBNAIL_COT, len(media)
        score_siblings(model, processor, media, tree, style=style, level=LEVEL, trie=trie, batch_size=size)
        middle = time.perf_counter()
        predict_serendipitous_clusters(
            model, processor, media, tree, style=style, level=LEVEL, constrained=True,
            num_beams=beams, top_k=beams, candidates=candidates, batch_size=size,
        )  # fmt: skip
        if repeat:
            runs["score_all"].append(middle - started)
            runs["constrained_beams"].append(time.perf_counter() - middle)
    score_all, beam = statistics.median(runs["score_all"]), statistics.median(runs["constrained_beams"])
    print(f"  every sibling scored {score_all:.3f}s vs constrained {beams}-beam search {beam:.3f}s")
    return {
        "siblings_per_item": len(candidates[0]) if candidates else 0,
        "serving_beams": beams,
        "score_all_median_s": round(score_all, 4),
        "constrained_beams_median_s": round(beam, 4),
        "ratio_score_all_over_beams": round(score_all / beam, 3),
        "target_ratio_at_most": 1.5,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Per family (``--architectures``; one text model with ``--model text``) the decoding figures."""
    torch.set_num_threads(args.threads)
    load_at_start = list(os.getloadavg())
    tree = synthetic_tree()
    families = args.architectures if args.model == "vlm" else ["text"]
    return {
        "families": {family: run_family(args, tree, family) for family in families},
        "repeats": args.repeats,
        "torch_threads": args.threads,
        "machine": platform.platform(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": list(os.getloadavg()),
        "under_load": load_at_start[0] > 1.0,
        "target_ratio_at_most": 1.3,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    from serendipity.mllm.tiny import ARCHITECTURES

    parser.add_argument("--model", choices=("vlm", "text"), default="vlm")
    parser.add_argument(
        "--architectures", nargs="+", choices=ARCHITECTURES, default=["llava", "gemma3"], help="families"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--serving-beams", type=int, default=3, help="beams of the constrained search compared"
    )
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the answer's room + 12")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results = run(args)
    write_json_atomic(results, args.output)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

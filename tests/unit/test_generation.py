"""parse_final_answer and generate_answers on a tiny random LlamaForCausalLM with a word-level tokenizer."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from serendipity.mllm.constants import ANSWER_MARKER
from serendipity.mllm.generation import generate_answers, parse_final_answer, serendipitous_candidates
from serendipity.tree import ClusterTree

SPECIAL = {"pad_token": "[PAD]", "unk_token": "[UNK]", "eos_token": "[EOS]"}
LEVEL = 3


def _tree() -> ClusterTree:
    rows = [(1, 1, None, "entertainment"), (2, 1, None, "knowledge")]
    rows += [(10, 2, 1, "music"), (11, 2, 1, "comedy"), (12, 2, 2, "science")]
    level3 = {
        100: (10, "live music"),
        101: (10, "live music festivals"),
        102: (10, "music covers"),
        103: (10, "music videos"),
        104: (11, "stand up comedy"),
        105: (11, "sketch comedy"),
        106: (12, "space science"),
        107: (12, "chemistry experiments"),
        108: (12, "animal science"),
    }
    rows += [(c, 3, parent, text) for c, (parent, text) in level3.items()]
    rows += [(c + 900, 4, c, f"{text} clips") for c, (_, text) in level3.items()]
    return ClusterTree.from_frame(
        pd.DataFrame(rows, columns=["cluster_id", "level", "parent_id", "description"])
    )


@pytest.fixture(scope="module")
def tree() -> ClusterTree:
    return _tree()


@pytest.fixture(scope="module")
def tokenizer(tree: ClusterTree) -> PreTrainedTokenizerFast:
    corpus = [f"Video: {d} in {d}\n{ANSWER_MARKER} {d}" for d in tree.descriptions()]
    backend = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=list(SPECIAL.values())))
    return PreTrainedTokenizerFast(tokenizer_object=backend, padding_side="left", **SPECIAL)


@pytest.fixture(scope="module")
def model(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    return LlamaForCausalLM(config).eval()


def _batch(tokenizer: PreTrainedTokenizerFast, tree: ClusterTree, direct: bool) -> tuple[dict, list[int]]:
    items = [100, 102, 104, 106, 107]
    suffix = f" {ANSWER_MARKER}" if direct else ""
    prompts = [f"Video: {tree.description(c)}{suffix}" for c in items]
    return dict(tokenizer(prompts, return_tensors="pt", padding=True)), items


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("live music", ("", "live music")),
        ("  live music \n", ("", "live music")),
        ("Video: a in b\nAnswer: live music", ("Video: a in b", "live music")),
        ("Video: Answer: x\nAnswer:  live music  ", ("Video: Answer: x", "live music")),
        ("Video: a in b\nAnswer:", ("Video: a in b", "")),
        ("Answer:\n \t", ("", "")),
        ("", ("", "")),
    ],
)
def test_parse_final_answer_edge_cases(text: str, expected: tuple[str, str]) -> None:
    assert parse_final_answer(text) == expected


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_constrained_outputs_are_exact_descriptions(model, tokenizer, tree, direct, num_beams) -> None:
    inputs, items = _batch(tokenizer, tree, direct)
    results = generate_answers(
        model,
        tokenizer,
        inputs,
        tree,
        constrained=True,
        num_beams=num_beams,
        max_new_tokens=12,
        answer_level=LEVEL,
    )
    assert len(results) == len(items)
    for predictions in results:
        assert len(predictions) == 1
        (prediction,) = predictions
        assert prediction.cluster_id in tree.at_level(LEVEL)
        assert prediction.description == tree.description(prediction.cluster_id)
        assert (prediction.reasoning == "") is direct


def test_free_decoding_of_a_random_model_names_no_cluster(model, tokenizer, tree) -> None:
    inputs, _ = _batch(tokenizer, tree, direct=True)
    results = generate_answers(model, tokenizer, inputs, tree, constrained=False, max_new_tokens=12)
    names = [p.cluster_id for predictions in results for p in predictions]
    assert len(names) == len(results)
    assert any(cluster_id is None for cluster_id in names)


def test_candidates_restrict_each_example(model, tokenizer, tree) -> None:
    inputs, items = _batch(tokenizer, tree, direct=False)
    candidates = [serendipitous_candidates(tree, item, LEVEL) for item in items]
    results = generate_answers(
        model,
        tokenizer,
        inputs,
        tree,
        constrained=True,
        num_beams=4,
        top_k=2,
        candidates=candidates,
        max_new_tokens=16,
    )
    for item, allowed, predictions in zip(items, candidates, results, strict=True):
        assert item not in allowed and allowed
        assert predictions and {p.cluster_id for p in predictions} <= set(allowed)


def test_beam_top_k_returns_distinct_clusters_best_first(model, tokenizer, tree) -> None:
    inputs, _ = _batch(tokenizer, tree, direct=True)
    results = generate_answers(
        model,
        tokenizer,
        inputs,
        tree,
        constrained=True,
        num_beams=5,
        top_k=4,
        max_new_tokens=8,
        answer_level=LEVEL,
    )
    for predictions in results:
        clusters = [p.cluster_id for p in predictions]
        scores = [p.score for p in predictions]
        assert len(clusters) == 4 and len(set(clusters)) == 4
        assert scores == sorted(scores, reverse=True)


def test_top_k_above_num_beams_is_rejected(model, tokenizer, tree) -> None:
    inputs, _ = _batch(tokenizer, tree, direct=True)
    with pytest.raises(ValueError, match="top_k"):
        generate_answers(model, tokenizer, inputs, tree, constrained=True, num_beams=2, top_k=3)


@pytest.mark.slow
def test_constrained_answers_from_the_tiny_default_vlm_with_images(tree) -> None:
    import numpy as np

    from serendipity.mllm.data import generation_batch
    from serendipity.mllm.prompts import ItemMedia, PromptStyle, build_prompt
    from serendipity.mllm.tiny import TinySize, build_tiny_model

    model, processor = build_tiny_model(
        tree.descriptions() + ["Title: a video"], size=TinySize(hidden_size=32, num_layers=1)
    )
    rng = np.random.default_rng(0)
    leaves = [1000, 1004, 1006]
    media = [
        ItemMedia(i, "a video", tuple(tree.path(leaf)), [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)])
        for i, leaf in enumerate(leaves)
    ]
    prompts = [build_prompt(m, PromptStyle.THUMBNAIL_COT, tree, LEVEL, processor) for m in media]
    assert all(p.images for p in prompts)
    inputs = generation_batch(processor, prompts)
    assert "pixel_values" in inputs
    candidates = [serendipitous_candidates(tree, m.cluster_at(LEVEL), LEVEL) for m in media]
    results = generate_answers(
        model.eval(),
        processor,
        inputs,
        tree,
        constrained=True,
        num_beams=2,
        top_k=2,
        candidates=candidates,
        max_new_tokens=24,
        answer_level=LEVEL,
    )
    for allowed, predictions in zip(candidates, results, strict=True):
        assert predictions and {p.cluster_id for p in predictions} <= set(allowed)
        assert all(p.description == tree.description(p.cluster_id) for p in predictions)

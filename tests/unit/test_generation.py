"""parse_final_answer and generate_answers on a tiny random LlamaForCausalLM with a word-level tokenizer."""

from __future__ import annotations

import pytest
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast
from word_model import small_tree, tiny_llama, word_tokenizer

from serendipity.mllm.constants import ANSWER_MARKER
from serendipity.mllm.generation import generate_answers, parse_final_answer, serendipitous_candidates
from serendipity.tree import ClusterTree

LEVEL = 3


@pytest.fixture(scope="module")
def tree() -> ClusterTree:
    return small_tree()


@pytest.fixture(scope="module")
def tokenizer(tree: ClusterTree) -> PreTrainedTokenizerFast:
    return word_tokenizer(tree)


@pytest.fixture(scope="module")
def model(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    return tiny_llama(tokenizer)


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

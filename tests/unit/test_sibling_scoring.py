"""score_siblings: every sibling's score is the model's own log-likelihood of answering it."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast
from word_model import small_tree, tiny_llama, word_tokenizer

from serendipity.mllm.constants import ANSWER_MARKER
from serendipity.mllm.generation import serendipitous_candidates
from serendipity.mllm.prompts import ItemMedia, PromptStyle, build_prompt
from serendipity.mllm.scoring import score_siblings
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


class TextProcessor:
    """A text-only processor around a tokenizer (what a multimodal processor is without images)."""

    chat_template = None
    image_token = "[UNK]"

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    def __call__(self, text: str, return_tensors: str = "pt") -> dict:
        return dict(self.tokenizer(text, return_tensors=return_tensors, add_special_tokens=False))


def _items(tree) -> list[ItemMedia]:
    clusters = [100, 102, 104, 106, 107]
    return [
        ItemMedia(
            item_id=i,
            title=tree.description(c),
            cluster_path=(tree.ancestor_at(c, 1), tree.parent(c), c, c + 900),
        )
        for i, c in enumerate(clusters)
    ]


def _own_log_likelihood(model, tokenizer, tree, item: ItemMedia, cluster: int) -> float:
    """The model's loss on prompt + 'marker description' + EOS, times the answer's token count."""
    prompt = build_prompt(item, PromptStyle.TEXT, tree, LEVEL, TextProcessor(tokenizer))
    prompt_ids = tokenizer(prompt.text, add_special_tokens=False)["input_ids"]
    marker = tokenizer(ANSWER_MARKER, add_special_tokens=False)["input_ids"]
    answer = tokenizer(f" {tree.description(cluster)}", add_special_tokens=False)["input_ids"]
    answer = [*answer, tokenizer.eos_token_id]
    ids = torch.tensor([[*prompt_ids, *marker, *answer]])
    labels = torch.tensor([[-100] * (len(prompt_ids) + len(marker)) + answer])
    with torch.inference_mode():
        loss = model(input_ids=ids, labels=labels).loss
    return -float(loss) * len(answer)


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_sibling_scores_equal_the_models_own_log_likelihoods(model, tokenizer, tree, batch_size) -> None:
    items = _items(tree)
    scored = score_siblings(
        model,
        TextProcessor(tokenizer),
        items,
        tree,
        style=PromptStyle.TEXT,
        level=LEVEL,
        batch_size=batch_size,
    )
    assert [s.item_id for s in scored] == [item.item_id for item in items]
    for item, scores in zip(items, scored, strict=True):
        assert list(scores.candidates) == serendipitous_candidates(tree, item.cluster_at(LEVEL), LEVEL)
        expected = [_own_log_likelihood(model, tokenizer, tree, item, c) for c in scores.candidates]
        assert scores.log_likelihoods == pytest.approx(expected, abs=1e-4)
        assert sum(scores.probabilities()) == pytest.approx(1.0)

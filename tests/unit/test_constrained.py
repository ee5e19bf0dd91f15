"""DescriptionTrie and AnswerConstraintProcessor on a small tree with tokenizers trained in the test."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from serendipity.mllm.constants import ANSWER_MARKER
from serendipity.mllm.constrained import AnswerConstraintProcessor, DescriptionTrie
from serendipity.tree import ClusterTree

SPECIAL = {"pad_token": "[PAD]", "unk_token": "[UNK]", "eos_token": "[EOS]"}
CLUSTERS = [
    (1, 1, None, "entertainment"),
    (2, 1, None, "knowledge"),
    (10, 2, 1, "music"),
    (11, 2, 1, "comedy"),
    (12, 2, 2, "science"),
    (100, 3, 10, "live music"),
    (101, 3, 10, "live music festivals"),
    (102, 3, 10, "music covers"),
    (103, 3, 11, "stand up comedy"),
    (104, 3, 12, "space science"),
    (1000, 4, 100, "club gigs"),
    (1001, 4, 101, "summer festival crowds"),
    (1002, 4, 102, "guitar covers"),
    (1003, 4, 103, "late night sets"),
    (1004, 4, 104, "rocket launches"),
]


def _tree() -> ClusterTree:
    return ClusterTree.from_frame(
        pd.DataFrame(CLUSTERS, columns=["cluster_id", "level", "parent_id", "description"])
    )


def _targets(tree: ClusterTree) -> list[str]:
    describe = tree.description
    return [
        f"Video: {describe(c)} in {describe(tree.parent(c))}\n{ANSWER_MARKER} {describe(c)}"
        for c in tree.at_level(3)
    ]


def _word_tokenizer(tree: ClusterTree) -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.train_from_iterator(
        _targets(tree) + tree.descriptions(), trainers.WordLevelTrainer(special_tokens=list(SPECIAL.values()))
    )
    return PreTrainedTokenizerFast(tokenizer_object=backend, padding_side="left", **SPECIAL)


def _byte_bpe_tokenizer(tree: ClusterTree) -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=list(SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator((_targets(tree) + tree.descriptions()) * 5, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, padding_side="left", **SPECIAL)


@pytest.fixture(scope="module")
def tree() -> ClusterTree:
    return _tree()


@pytest.fixture(scope="module")
def tokenizer(tree: ClusterTree) -> PreTrainedTokenizerFast:
    return _word_tokenizer(tree)


def _ids(tokenizer: PreTrainedTokenizerFast, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_trie_tokens_decode_to_the_exact_descriptions(tree, tokenizer) -> None:
    trie = DescriptionTrie.for_tree(tokenizer, tree)
    assert trie.cluster_ids == frozenset(tree.clusters)
    for cluster_id, tokens in trie.token_ids_by_cluster.items():
        assert tokenizer.decode(list(tokens)) == tree.description(cluster_id)
        assert trie.cluster_for_tokens([*tokens, tokenizer.eos_token_id]) == cluster_id


@pytest.mark.parametrize("make_tokenizer", [_word_tokenizer, _byte_bpe_tokenizer])
def test_trie_tokens_match_the_answer_inside_a_full_target(tree, make_tokenizer) -> None:
    tokenizer = make_tokenizer(tree)
    trie = DescriptionTrie.for_tree(tokenizer, tree, level=3)
    processor = AnswerConstraintProcessor(trie, prompt_length=0)
    targets = _targets(tree)
    encoded = [_ids(tokenizer, text) for text in targets]
    width = max(len(ids) for ids in encoded)
    batch = torch.tensor([[tokenizer.pad_token_id] * (width - len(ids)) + ids for ids in encoded])
    starts = processor.answer_starts(batch, 0).tolist()
    for row, cluster_id in enumerate(tree.at_level(3)):
        assert starts[row] > 0, targets[row]
        assert tuple(batch[row, starts[row] :].tolist()) == trie.token_ids_by_cluster[cluster_id]
        assert tokenizer.decode(trie.token_ids_by_cluster[cluster_id]).strip() == tree.description(cluster_id)


def test_allowed_next_handles_a_description_that_prefixes_another(tree, tokenizer) -> None:
    trie = DescriptionTrie.for_tree(tokenizer, tree, level=3)
    eos = tokenizer.eos_token_id
    live, music, festivals = (_ids(tokenizer, word)[0] for word in ("live", "music", "festivals"))
    assert eos not in trie.allowed_next([live])
    assert set(trie.allowed_next([live, music])) == {festivals, eos}
    assert trie.allowed_next([live, music, festivals]) == [eos]
    assert trie.allowed_next([live, music], frozenset({101})) == [festivals]
    assert trie.allowed_next([live, music], frozenset({100})) == [eos]
    assert set(trie.allowed_next([], frozenset({100, 101}))) == {live}


def test_trie_rejects_unknown_words_and_duplicate_tokenisations(tokenizer) -> None:
    with pytest.raises(ValueError, match="cluster 7"):
        DescriptionTrie.build(tokenizer, {7: "underwater basket weaving"})
    with pytest.raises(ValueError, match="tokenise alike"):
        DescriptionTrie.build(tokenizer, {1: "live music", 2: "live  music"})


def _prompt(tokenizer: PreTrainedTokenizerFast, text: str) -> torch.Tensor:
    return torch.tensor([_ids(tokenizer, text)])


def test_processor_leaves_reasoning_free_except_eos(tree, tokenizer) -> None:
    trie = DescriptionTrie.for_tree(tokenizer, tree, level=3)
    prompt = _prompt(tokenizer, "Video: live music in music")
    processor = AnswerConstraintProcessor(trie, prompt_length=prompt.shape[1], max_new_tokens=20)
    generated = torch.cat([prompt, _prompt(tokenizer, "Video: music covers in")], dim=1)
    scores = torch.randn(1, tokenizer.vocab_size)
    masked = processor(generated, scores.clone())
    eos = tokenizer.eos_token_id
    assert torch.isinf(masked[0, eos])
    keep = torch.ones(tokenizer.vocab_size, dtype=torch.bool)
    keep[eos] = False
    assert torch.equal(masked[0, keep], scores[0, keep])


def test_processor_constrains_after_the_marker_per_example_candidates(tree, tokenizer) -> None:
    trie = DescriptionTrie.for_tree(tokenizer, tree, level=3)
    prompt = _prompt(tokenizer, f"live music {ANSWER_MARKER}").repeat(4, 1)
    processor = AnswerConstraintProcessor(trie, candidates=[[101], [103, 104]], prompt_length=prompt.shape[1])
    masked = processor(prompt, torch.zeros(4, tokenizer.vocab_size))
    allowed = [set(torch.nonzero(torch.isfinite(row)).flatten().tolist()) for row in masked]
    live, stand, space = (_ids(tokenizer, word)[0] for word in ("live", "stand", "space"))
    assert allowed == [{live}, {live}, {stand, space}, {stand, space}]


def test_processor_forces_the_marker_when_only_the_answer_fits(tree, tokenizer) -> None:
    trie = DescriptionTrie.for_tree(tokenizer, tree, level=3)
    prompt = _prompt(tokenizer, "live music")
    room = len(trie.forced_marker) + trie.max_length + 1
    processor = AnswerConstraintProcessor(trie, prompt_length=prompt.shape[1], max_new_tokens=room + 2)
    two_free = torch.cat([prompt, _prompt(tokenizer, "music music")], dim=1)
    masked = processor(two_free, torch.zeros(1, tokenizer.vocab_size))
    assert torch.nonzero(torch.isfinite(masked[0])).flatten().tolist() == [trie.forced_marker[0]]
    with pytest.raises(ValueError, match="max_new_tokens"):
        AnswerConstraintProcessor(trie, max_new_tokens=room - 1)
    with pytest.raises(ValueError, match="example 0"):
        AnswerConstraintProcessor(trie, candidates=[[1]])

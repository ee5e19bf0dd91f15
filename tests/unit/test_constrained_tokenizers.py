"""The description trie on every tokenizer kind a VLM family ships: byte-level BPE (with and without a
prefix space), SentencePiece-style BPE and Unigram (Metaspace ``▁``, prepended always or first) and
Gemma-style SentencePiece (spaces normalised to ``▁``, no pre-tokenizer), with and without a space
between the marker and the description, under greedy search and beam search.

Each tokenizer is trained offline on the tree's texts with the ``tokenizers`` library; the last test also
takes the tokenizer of every tiny family as its builder makes it (``serendipity.mllm.tiny``).
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from serendipity.mllm.constants import ANSWER_MARKER
from serendipity.mllm.constrained import AnswerConstraintProcessor, DescriptionTrie
from serendipity.mllm.generation import generate_answers
from serendipity.mllm.tiny import FAMILIES, build_tiny_model
from serendipity.mllm.torchvision_compat import torchvision_problem
from serendipity.tree import ClusterTree

SPECIAL = {"pad_token": "<pad>", "unk_token": "<unk>", "eos_token": "</s>", "bos_token": "<s>"}
CLUSTERS = [
    (1, 1, None, "entertainment"),
    (2, 1, None, "knowledge"),
    (10, 2, 1, "music"),
    (11, 2, 1, "comedy"),
    (12, 2, 2, "science"),
    (100, 3, 10, "live music"),
    (101, 3, 10, "live music festivals"),
    (102, 3, 10, "music covers"),
    (103, 3, 11, "stand-up comedy"),
    (104, 3, 12, "space science: rockets"),
    (105, 3, 12, "Science & Nature"),
]
SEPARATORS = (" ", "")


def _tree() -> ClusterTree:
    return ClusterTree.from_frame(
        pd.DataFrame(CLUSTERS, columns=["cluster_id", "level", "parent_id", "description"])
    )


def _targets(tree: ClusterTree, separator: str = " ") -> list[str]:
    describe = tree.description
    return [
        f"Video: {describe(c)} in {describe(tree.parent(c))}\n{ANSWER_MARKER}{separator}{describe(c)}"
        for c in tree.at_level(3)
    ]


def _corpus(tree: ClusterTree, separator: str = " ") -> list[str]:
    return (_targets(tree, separator) + tree.descriptions()) * 5


def _wrap(backend: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=backend, padding_side="left", **SPECIAL)


def _bpe_trainer(**extra: object) -> trainers.BpeTrainer:
    return trainers.BpeTrainer(vocab_size=500, special_tokens=list(SPECIAL.values()), **extra)


def _byte_level(add_prefix_space: bool) -> Callable[[ClusterTree], PreTrainedTokenizerFast]:
    def build(tree: ClusterTree) -> PreTrainedTokenizerFast:
        backend = Tokenizer(models.BPE(unk_token="<unk>"))
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
        backend.decoder = decoders.ByteLevel()
        backend.train_from_iterator(
            _corpus(tree), _bpe_trainer(initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        )
        return _wrap(backend)

    return build


def _metaspace(model: str, prepend_scheme: str) -> Callable[[ClusterTree], PreTrainedTokenizerFast]:
    def build(tree: ClusterTree) -> PreTrainedTokenizerFast:
        if model == "bpe":
            backend = Tokenizer(models.BPE(unk_token="<unk>"))
            trainer = _bpe_trainer()
        else:
            backend = Tokenizer(models.Unigram())
            trainer = trainers.UnigramTrainer(
                vocab_size=300, special_tokens=list(SPECIAL.values()), unk_token="<unk>"
            )
        backend.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme=prepend_scheme)
        backend.decoder = decoders.Metaspace(prepend_scheme=prepend_scheme)
        backend.train_from_iterator(_corpus(tree), trainer)
        return _wrap(backend)

    return build


def _gemma_style(tree: ClusterTree, separator: str = " ") -> PreTrainedTokenizerFast:
    """Spaces normalised to ``▁`` and no pre-tokenizer, as Gemma's and PaliGemma's tokenizer.json."""
    backend = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    backend.normalizer = normalizers.Replace(" ", "▁")
    backend.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse()])
    backend.train_from_iterator(_corpus(tree, separator), _bpe_trainer())
    backend.pre_tokenizer = None  # trained word by word, like SentencePiece; applied to whole texts
    return _wrap(backend)


TOKENIZER_KINDS = {
    "byte_bpe": _byte_level(False),
    "byte_bpe_prefix_space": _byte_level(True),
    "sentencepiece_bpe_first": _metaspace("bpe", "first"),
    "sentencepiece_bpe_always": _metaspace("bpe", "always"),
    "sentencepiece_unigram": _metaspace("unigram", "always"),
    "gemma_style": _gemma_style,
}


@pytest.fixture(scope="module")
def tree() -> ClusterTree:
    return _tree()


@pytest.fixture(scope="module", params=sorted(TOKENIZER_KINDS))
def tokenizer(request: pytest.FixtureRequest, tree: ClusterTree) -> PreTrainedTokenizerFast:
    return TOKENIZER_KINDS[request.param](tree)


def _ids(tokenizer: PreTrainedTokenizerFast, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("separator", SEPARATORS)
def test_trie_tokens_decode_to_each_description(tree, tokenizer, separator: str) -> None:
    trie = DescriptionTrie.for_tree(tokenizer, tree, separator=separator)
    assert trie.cluster_ids == frozenset(tree.clusters)
    for cluster_id, tokens in trie.token_ids_by_cluster.items():
        assert tokenizer.decode(list(tokens)).strip() == tree.description(cluster_id)
        assert trie.cluster_for_tokens([*tokens, tokenizer.eos_token_id]) == cluster_id


@pytest.mark.parametrize("separator", SEPARATORS)
def test_answer_inside_a_whole_target_is_found_and_matches_the_trie(tree, tokenizer, separator: str) -> None:
    trie = DescriptionTrie.for_tree(tokenizer, tree, level=3, separator=separator)
    processor = AnswerConstraintProcessor(trie, prompt_length=0)
    targets = _targets(tree, separator)
    encoded = [_ids(tokenizer, text) for text in targets]
    width = max(len(ids) for ids in encoded)
    batch = torch.tensor([[tokenizer.pad_token_id] * (width - len(ids)) + ids for ids in encoded])
    starts = processor.answer_starts(batch, 0).tolist()
    for row, cluster_id in enumerate(tree.at_level(3)):
        assert starts[row] > 0, (targets[row], tokenizer.convert_ids_to_tokens(encoded[row]))
        answer = tuple(batch[row, starts[row] :].tolist())
        assert answer == trie.token_ids_by_cluster[cluster_id], tokenizer.convert_ids_to_tokens(answer)


def test_the_forced_marker_is_recognised_as_a_marker(tree, tokenizer) -> None:
    trie = DescriptionTrie.for_tree(tokenizer, tree, level=3)
    prompt = torch.tensor([_ids(tokenizer, "Video: music")])
    processor = AnswerConstraintProcessor(trie, prompt_length=prompt.shape[1])
    forced = torch.cat([prompt, torch.tensor([trie.forced_marker])], dim=1)
    assert processor.answer_starts(forced, prompt.shape[1]).tolist() == [len(trie.forced_marker)]


def _tiny_language_model(tokenizer: PreTrainedTokenizerFast, seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize(("prompt_end", "num_beams"), [("Video:", 3), (ANSWER_MARKER, 3), ("Video:", 1)])
def test_generation_names_only_candidate_clusters(tree, tokenizer, prompt_end: str, num_beams: int) -> None:
    """A random model under the constraint: every beam ends on a candidate, mapped back from its tokens."""
    model = _tiny_language_model(tokenizer, seed=len(prompt_end) + num_beams)
    trie = DescriptionTrie.for_tree(tokenizer, tree, level=3)
    _assert_only_candidates_named(model, tokenizer, tree, trie, prompt_end, num_beams)


def _assert_only_candidates_named(model, tokenizer, tree, trie, prompt_end: str, num_beams: int) -> None:
    prompts = [f"Title: {tree.description(c)}\n{prompt_end}" for c in (100, 104)]
    inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    candidates = [[100, 101, 102], [104, 105]]
    results = generate_answers(
        model,
        tokenizer,
        dict(inputs),
        tree,
        constrained=True,
        num_beams=num_beams,
        top_k=num_beams,
        candidates=candidates,
        max_new_tokens=len(trie.forced_marker) + trie.max_length + 6,
        trie=trie,
    )
    for predictions, allowed in zip(results, candidates, strict=True):
        assert predictions, "every example gets at least one answer"
        for prediction in predictions:
            assert prediction.cluster_id in allowed, prediction
            assert prediction.description == tree.description(prediction.cluster_id)


def test_a_tokenizer_merging_marker_and_answer_is_refused_with_a_reason(tree) -> None:
    """Trained on answers glued to the marker, SentencePiece learns tokens like ``▁music\\nAnswer:live``."""
    glued = _gemma_style(tree, separator="")
    with pytest.raises(ValueError, match="merges the marker with cluster"):
        DescriptionTrie.for_tree(glued, tree, level=3, separator="")


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_tokenizer(request: pytest.FixtureRequest, tree: ClusterTree) -> PreTrainedTokenizerFast:
    """The tokenizer a tiny family's builder trains (its special tokens, kind and chat template)."""
    if FAMILIES[request.param].native_video and (problem := torchvision_problem()) is not None:
        pytest.skip(f"the {request.param} processor needs torchvision: {problem}")
    _, processor = build_tiny_model(_corpus(tree), architecture=request.param)
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:  # as load_model does
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@pytest.mark.parametrize("separator", SEPARATORS)
def test_family_tokenizers_decode_only_candidate_descriptions(
    tree: ClusterTree, family_tokenizer: PreTrainedTokenizerFast, separator: str
) -> None:
    """Each family's own tokenizer, the answer with and without a space after the marker: the trie
    spells every description, and constrained beam search names only the candidates."""
    tokenizer = family_tokenizer
    trie = DescriptionTrie.for_tree(tokenizer, tree, level=3, separator=separator)
    for cluster_id, tokens in trie.token_ids_by_cluster.items():
        assert tokenizer.decode(list(tokens)).strip() == tree.description(cluster_id)
    model = _tiny_language_model(tokenizer, seed=len(separator))
    _assert_only_candidates_named(model, tokenizer, tree, trie, "Video:", num_beams=3)

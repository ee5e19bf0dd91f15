"""What the decoding tests share: a tiny cluster tree, a word-level tokenizer over its descriptions and
a tiny random LlamaForCausalLM (builders; each test module wraps them in its own fixtures)."""

from __future__ import annotations

import pandas as pd
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from serendipity.mllm.constants import ANSWER_MARKER
from serendipity.tree import ClusterTree

SPECIAL = {"pad_token": "[PAD]", "unk_token": "[UNK]", "eos_token": "[EOS]"}
LEVEL = 3


def small_tree() -> ClusterTree:
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


def word_tokenizer(tree: ClusterTree) -> PreTrainedTokenizerFast:
    corpus = [f"Video: {d} in {d}\n{ANSWER_MARKER} {d}" for d in tree.descriptions()]
    backend = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=list(SPECIAL.values())))
    return PreTrainedTokenizerFast(tokenizer_object=backend, padding_side="left", **SPECIAL)


def tiny_llama(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
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

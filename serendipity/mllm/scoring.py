"""Every sibling scored: the model's log-likelihood of each candidate answer, by teacher forcing.

For chain-of-thought styles the model first writes its reasoning (greedy, up to the answer marker, as
constrained decoding would); then each candidate's description tokens (as the answer trie holds them)
and EOS follow that prefix, and their summed log-probability is the candidate's score. Direct styles
score the candidates right after the marker. Rows are (item, candidate) pairs batched together, each
a full forward pass, which every model family supports; a softmax over an item's candidates gives the
model's distribution over its siblings.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from serendipity.mllm.constants import ANSWER_MARKER
from serendipity.mllm.constrained import AnswerConstraintProcessor, DescriptionTrie
from serendipity.mllm.data import IGNORE_INDEX, SEQUENCE_KEYS, collate, encode, generation_batch
from serendipity.mllm.generation import resolve_tokenizer, serendipitous_candidates
from serendipity.mllm.model import answer_token_type
from serendipity.mllm.prompts import ItemMedia, PromptStyle, build_prompt
from serendipity.tree import ClusterTree


@dataclass(frozen=True)
class SiblingScores:
    """One item's candidates and the model's log-likelihood of answering each (higher is better)."""

    item_id: int
    candidates: tuple[int, ...]
    log_likelihoods: tuple[float, ...]
    reasoning: str = ""

    def probabilities(self) -> list[float]:
        """The softmax of the log-likelihoods over the candidates."""
        if not self.candidates:
            return []
        top = max(self.log_likelihoods)
        weights = [math.exp(ll - top) for ll in self.log_likelihoods]
        total = sum(weights)
        return [w / total for w in weights]


def _prefixes(
    model: Any,
    processor: Any,
    inputs: dict[str, Any],
    trie: DescriptionTrie,
    candidates: Sequence[Sequence[int]],
    max_new_tokens: int,
) -> tuple[list[list[int]], list[str]]:
    """Greedy reasoning up to and including the answer marker, per row: its tokens and its text."""
    tokenizer = resolve_tokenizer(processor)
    prompt_length = inputs["input_ids"].shape[1]
    constraint = AnswerConstraintProcessor(
        trie, candidates=candidates, prompt_length=prompt_length, max_new_tokens=max_new_tokens
    )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else trie.eos_token_ids[0]
    with torch.inference_mode():
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            logits_processor=[constraint],
            eos_token_id=list(trie.eos_token_ids),
            pad_token_id=pad_id,
        )
    sequences = output.cpu() if isinstance(output, torch.Tensor) else output.sequences.cpu()
    starts = constraint.answer_starts(sequences, prompt_length).tolist()
    generated = sequences[:, prompt_length:].tolist()
    prefixes = [
        row[:start] if start >= 0 else row + list(trie.forced_marker)
        for row, start in zip(generated, starts, strict=True)
    ]
    texts = tokenizer.batch_decode(prefixes, skip_special_tokens=True)
    reasoning = [
        text[: text.rfind(ANSWER_MARKER)].strip() if ANSWER_MARKER in text else text.strip() for text in texts
    ]
    return prefixes, reasoning


def _continued(
    encoded: dict[str, Any], prefix: Sequence[int], answer: Sequence[int], processor: Any
) -> dict[str, Any]:
    """A prompt's processor inputs followed by ``prefix`` and ``answer`` tokens; only ``answer`` labelled."""
    extra = torch.tensor([[*prefix, *answer]], dtype=encoded["input_ids"].dtype)
    fills = {"input_ids": extra, "attention_mask": 1, "token_type_ids": answer_token_type(processor)}
    row = dict(encoded)
    for key in SEQUENCE_KEYS:
        if key in row:
            fill = fills.get(key, 0)
            filler = fill if isinstance(fill, torch.Tensor) else torch.full_like(extra, fill)
            row[key] = torch.cat([row[key], filler.to(row[key].dtype)], dim=1)
    ignored = encoded["input_ids"].shape[1] + len(prefix)
    row["labels"] = torch.cat(
        [torch.full((1, ignored), IGNORE_INDEX), torch.tensor([list(answer)], dtype=torch.long)], dim=1
    )
    return row


def continuation_log_likelihoods(model: Any, batch: dict[str, Any]) -> list[float]:
    """Per row of a right-padded labelled batch: the summed log-probability of its labelled tokens."""
    labels = batch.pop("labels")
    inputs = {key: value.to(model.device) for key, value in batch.items()}
    with torch.inference_mode():
        logits = model(**inputs).logits.float()
    targets = labels[:, 1:].to(logits.device)
    log_probs = torch.log_softmax(logits[:, :-1], dim=-1)
    mask = targets != IGNORE_INDEX
    picked = log_probs.gather(2, targets.clamp(min=0)[..., None]).squeeze(2)
    return (picked * mask).sum(dim=1).cpu().tolist()


def score_siblings(
    model: Any,
    processor: Any,
    items: Sequence[ItemMedia],
    tree: ClusterTree,
    *,
    style: PromptStyle | str,
    level: int,
    trie: DescriptionTrie | None = None,
    batch_size: int = 16,
    max_new_tokens: int | None = None,
) -> list[SiblingScores]:
    """Every sibling of each item's level-L cluster scored by the model (``SiblingScores`` per item)."""
    from serendipity.mllm.metrics import max_answer_tokens

    style = PromptStyle(style)
    tokenizer = resolve_tokenizer(processor)
    trie = trie or DescriptionTrie.for_tree(tokenizer, tree, level=level)
    budget = max_new_tokens or max_answer_tokens(processor, tree, style, level)
    marker = tuple(tokenizer(ANSWER_MARKER, add_special_tokens=False)["input_ids"])
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else trie.eos_token_ids[0]
    results: list[SiblingScores] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        candidates = [serendipitous_candidates(tree, item.cluster_at(level), level) for item in chunk]
        prompts = [build_prompt(item, style, tree, level, processor) for item in chunk]
        if any(prompt.style.chain_of_thought for prompt in prompts):
            inputs = generation_batch(processor, prompts)
            inputs = {key: value.to(model.device) for key, value in inputs.items()}
            usable = [c or list(trie.cluster_ids) for c in candidates]
            prefixes, reasoning = _prefixes(model, processor, inputs, trie, usable, budget)
        else:
            prefixes, reasoning = [list(marker)] * len(chunk), [""] * len(chunk)
        rows = []
        for prompt, prefix, options in zip(prompts, prefixes, candidates, strict=True):
            encoded = encode(processor, prompt)
            prefix = prefix if prompt.style.chain_of_thought else list(marker)
            rows.extend(
                _continued(encoded, prefix, [*trie.token_ids_by_cluster[c], eos], processor) for c in options
            )
        scores: list[float] = []
        for first in range(0, len(rows), batch_size):
            batch = collate(rows[first : first + batch_size], tokenizer.pad_token_id or 0, "right")
            scores.extend(continuation_log_likelihoods(model, batch))
        offset = 0
        for item, options, why in zip(chunk, candidates, reasoning, strict=True):
            results.append(
                SiblingScores(
                    item.item_id, tuple(options), tuple(scores[offset : offset + len(options)]), why
                )
            )
            offset += len(options)
    return results


def try_score_siblings(*args: Any, **kwargs: Any) -> list[SiblingScores] | None:
    """``score_siblings``, or None (with a warning) for a family whose (item, candidate) rows do not
    batch; callers then fall back to constrained beams."""
    try:
        return score_siblings(*args, **kwargs)
    except (ValueError, RuntimeError) as error:
        logging.getLogger(__name__).warning(
            "scoring every sibling failed (%s); constrained beams instead", error
        )
        return None

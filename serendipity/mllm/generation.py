"""Generating answers: parse the final answer, map it to a cluster, beam top-k with optional constraints."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from serendipity.mllm.constants import ANSWER_MARKER
from serendipity.mllm.constrained import AnswerConstraintProcessor, DescriptionTrie
from serendipity.tree import ClusterTree


@dataclass(frozen=True)
class Prediction:
    """One answer: its cluster (None when the text names no cluster), the text, a score, the reasoning.

    ``score`` is the model's length-normalised log-probability of the generated tokens (higher is better).
    """

    cluster_id: int | None
    description: str
    score: float
    reasoning: str


def parse_final_answer(text: str) -> tuple[str, str]:
    """(reasoning, answer) split on the last answer marker; without one the whole text is a direct answer."""
    position = text.rfind(ANSWER_MARKER)
    if position < 0:
        return "", text.strip()
    return text[:position].strip(), text[position + len(ANSWER_MARKER) :].strip()


def answer_cluster(tree: ClusterTree, answer: str) -> int | None:
    """Exact-match lookup of an answer (this is what the match rate measures)."""
    return tree.cluster_for(answer)


def serendipitous_candidates(tree: ClusterTree, cluster_id: int, level: int) -> list[int]:
    """Valid targets for an item in ``cluster_id``: other level-``level`` clusters under the same parent."""
    return tree.siblings(tree.ancestor_at(cluster_id, level))


def resolve_tokenizer(processor: Any) -> Any:
    """The tokenizer of a multimodal processor, or the argument itself when it is a tokenizer."""
    return getattr(processor, "tokenizer", None) or processor


def _until_eos(tokens: list[int], eos_ids: Sequence[int]) -> list[int]:
    for position, token in enumerate(tokens):
        if token in eos_ids:
            return tokens[:position]
    return tokens


def _greedy_scores(output: Any, new_tokens: torch.Tensor, eos_ids: Sequence[int]) -> list[float]:
    """Mean log-probability of each row's tokens up to and including its first EOS, from the raw logits."""
    steps = []
    for position, logits in enumerate(output.logits):
        tokens = new_tokens[:, position].to(logits.device)
        steps.append(torch.log_softmax(logits.float(), dim=-1).gather(1, tokens[:, None]).squeeze(1).cpu())
    token_log_probs = torch.stack(steps, dim=1)
    is_eos = torch.isin(new_tokens[:, : len(steps)], torch.tensor(list(eos_ids)))
    after_eos = (is_eos.cumsum(dim=1) - is_eos.long()) > 0
    token_log_probs = token_log_probs.masked_fill(after_eos, 0.0)
    lengths = (~after_eos).sum(dim=1).clamp(min=1)
    return (token_log_probs.sum(dim=1) / lengths).tolist()


def _eos_ids(tokenizer: Any, model: Any, trie: DescriptionTrie | None) -> list[int]:
    if trie is not None:
        return list(trie.eos_token_ids)
    eos = tokenizer.eos_token_id
    if eos is None:
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        raise ValueError("neither the tokenizer nor the model's generation config names an EOS token")
    return list(eos) if isinstance(eos, list) else [int(eos)]


def _constraint(
    tokenizer: Any,
    tree: ClusterTree,
    trie: DescriptionTrie | None,
    candidates: Sequence[Sequence[int]] | None,
    prompt_length: int,
    max_new_tokens: int,
    answer_level: int | None,
) -> AnswerConstraintProcessor:
    """The logits processor that keeps each answer on a cluster description (``trie`` built if None)."""
    if trie is None:
        trie = DescriptionTrie.for_tree(tokenizer, tree, level=answer_level)
    return AnswerConstraintProcessor(
        trie, candidates=candidates, prompt_length=prompt_length, max_new_tokens=max_new_tokens
    )


def _generate(
    model: Any,
    inputs: Mapping[str, Any],
    *,
    num_beams: int,
    max_new_tokens: int,
    constraint: AnswerConstraintProcessor | None,
    eos_ids: list[int],
    pad_id: int,
) -> Any:
    """Deterministic generation of ``num_beams`` sequences per input (beam search when more than one)."""
    with torch.inference_mode():
        return model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=num_beams,
            num_return_sequences=num_beams,
            logits_processor=[constraint] if constraint is not None else None,
            eos_token_id=eos_ids,
            pad_token_id=pad_id,
            return_dict_in_generate=True,
            output_scores=num_beams > 1,
            output_logits=num_beams == 1,
        )


@dataclass(frozen=True)
class _Generated:
    """The generated rows (``num_beams`` per input, in order): new tokens, decoded text and scores."""

    new_tokens: torch.Tensor
    texts: list[str]
    scores: list[float]
    answer_starts: list[int]  # where the constrained answer begins in each row, -1 when unconstrained


def _generated(
    output: Any,
    tokenizer: Any,
    prompt_length: int,
    num_beams: int,
    eos_ids: list[int],
    constraint: AnswerConstraintProcessor | None,
) -> _Generated:
    new_tokens = output.sequences[:, prompt_length:].cpu()
    if num_beams > 1:
        scores = output.sequences_scores.float().cpu().tolist()
    else:
        scores = _greedy_scores(output, new_tokens, eos_ids)
    answer_starts = (
        constraint.answer_starts(output.sequences.cpu(), prompt_length).tolist()
        if constraint is not None
        else [-1] * len(scores)
    )
    texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return _Generated(new_tokens, texts, scores, answer_starts)


def _row_prediction(
    generated: _Generated,
    row: int,
    tree: ClusterTree,
    constraint: AnswerConstraintProcessor | None,
    eos_ids: list[int],
) -> Prediction:
    """One generated row as a prediction; a constrained answer is mapped back through its tokens."""
    reasoning, answer = parse_final_answer(generated.texts[row])
    cluster_id = answer_cluster(tree, answer)
    start = generated.answer_starts[row]
    if cluster_id is None and constraint is not None and start >= 0:
        cluster_id = constraint.trie.cluster_for_tokens(
            _until_eos(generated.new_tokens[row, start:].tolist(), eos_ids)
        )
        answer = tree.description(cluster_id) if cluster_id is not None else answer
    return Prediction(cluster_id, answer, float(generated.scores[row]), reasoning)


def _ranked(predictions: Sequence[Prediction], top_k: int) -> list[Prediction]:
    """The best-scored prediction per cluster (per text when it names none), best first, at most ``top_k``."""
    best: dict[object, Prediction] = {}
    for prediction in predictions:
        key: object = (
            prediction.cluster_id if prediction.cluster_id is not None else ("text", prediction.description)
        )
        if key not in best or best[key].score < prediction.score:
            best[key] = prediction
    return sorted(best.values(), key=lambda p: p.score, reverse=True)[:top_k]


def generate_answers(
    model: Any,
    processor: Any,
    inputs: Mapping[str, Any],
    tree: ClusterTree,
    *,
    constrained: bool,
    num_beams: int = 1,
    top_k: int = 1,
    candidates: Sequence[Sequence[int]] | None = None,
    max_new_tokens: int = 64,
    answer_level: int | None = None,
    trie: DescriptionTrie | None = None,
) -> list[list[Prediction]]:
    """Generate and parse answers; per input up to ``top_k`` predictions of distinct clusters, best first.

    ``inputs`` is what the processor (or tokenizer) returned for a left-padded batch. With ``constrained``
    every prediction names a cluster: one of the example's ``candidates`` when given, else one at
    ``answer_level`` (every cluster when None). Pass a prebuilt ``trie`` to avoid re-tokenising the tree.
    """
    if not 1 <= top_k <= num_beams:
        raise ValueError(f"top_k must be between 1 and num_beams={num_beams}, got {top_k}")
    tokenizer = resolve_tokenizer(processor)
    batch_size, prompt_length = inputs["input_ids"].shape
    if candidates is not None and len(candidates) != batch_size:
        raise ValueError(f"candidates has {len(candidates)} entries for a batch of {batch_size}")
    constraint = (
        _constraint(tokenizer, tree, trie, candidates, prompt_length, max_new_tokens, answer_level)
        if constrained
        else None
    )
    eos_ids = _eos_ids(tokenizer, model, constraint.trie if constraint is not None else trie)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    output = _generate(
        model,
        inputs,
        num_beams=num_beams,
        max_new_tokens=max_new_tokens,
        constraint=constraint,
        eos_ids=eos_ids,
        pad_id=pad_id,
    )
    generated = _generated(output, tokenizer, prompt_length, num_beams, eos_ids, constraint)
    results: list[list[Prediction]] = []
    for example in range(batch_size):
        rows = range(example * num_beams, (example + 1) * num_beams)
        predictions = [
            _row_prediction(generated, row, tree, constraint, eos_ids)
            for row in rows
            if math.isfinite(generated.scores[row])
        ]
        results.append(_ranked(predictions, top_k))
    return results

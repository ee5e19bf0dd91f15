"""Offline metrics of the paper: match rate and recall (recall@k with beams), and the best non-LLM guess.

Match rate: share of outputs exactly equal to some cluster description. Recall: share of held-out
context items whose output equals one of their label clusters' descriptions; recall@k counts a hit
when any of the top-k beams does. The non-LLM guess answers, for an item in level-L cluster c, the
sibling of c with the highest mean satisfaction in the training pairs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from serendipity.mllm.data import generation_batch
from serendipity.mllm.prompts import ItemMedia, PromptStyle, build_prompt, target_text
from serendipity.tree import ClusterTree


@dataclass(frozen=True)
class EvalResult:
    items: int
    match_rate: float
    recall: float
    recall_at_k: float
    k: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def max_answer_tokens(processor: Any, tree: ClusterTree, style: PromptStyle | str, level: int) -> int:
    """A token budget that fits the longest target (reasoning + answer) of any level-L cluster."""
    tokenizer = processor.tokenizer
    longest = 0
    for cluster in tree.at_level(level):
        text = target_text(style, tree, cluster, cluster)
        longest = max(longest, len(tokenizer(text, add_special_tokens=False)["input_ids"]))
    return longest + 4


def predict_serendipitous_clusters(
    model: Any,
    processor: Any,
    items: Sequence[ItemMedia],
    tree: ClusterTree,
    *,
    style: PromptStyle | str,
    level: int,
    constrained: bool = False,
    num_beams: int = 1,
    top_k: int = 1,
    candidates: Sequence[Sequence[int]] | None = None,
    batch_size: int = 16,
    max_new_tokens: int | None = None,
) -> list[list[Any]]:
    """Predictions (best first) for decoded items, in batches; the prompts follow ``style``."""
    from serendipity.mllm.generation import generate_answers

    budget = max_new_tokens or max_answer_tokens(processor, tree, style, level)
    results: list[list[Any]] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        prompts = [build_prompt(item, style, tree, level, processor) for item in chunk]
        inputs = generation_batch(processor, prompts)
        inputs = {key: value.to(model.device) for key, value in inputs.items()}
        results.extend(
            generate_answers(
                model,
                processor,
                inputs,
                tree,
                constrained=constrained,
                num_beams=num_beams,
                top_k=top_k,
                candidates=None if candidates is None else candidates[start : start + batch_size],
                max_new_tokens=budget,
                answer_level=level,
            )
        )
    return results


def score_predictions(
    predictions: Sequence[Sequence[Any]], item_ids: Sequence[int], labels: Mapping[int, set[int]], k: int
) -> EvalResult:
    """Match rate and recall of the top prediction; recall@k over the first ``k`` predictions."""
    if not item_ids:
        return EvalResult(0, 0.0, 0.0, 0.0, k)
    matched = hits = hits_at_k = 0
    for ranked, item_id in zip(predictions, item_ids, strict=True):
        top = ranked[0] if ranked else None
        matched += top is not None and top.cluster_id is not None
        hits += top is not None and top.cluster_id in labels[item_id]
        hits_at_k += any(p.cluster_id in labels[item_id] for p in ranked[:k])
    count = len(item_ids)
    return EvalResult(count, matched / count, hits / count, hits_at_k / count, k)


def evaluate_model(
    model: Any,
    processor: Any,
    items: Sequence[ItemMedia],
    labels: Mapping[int, set[int]],
    tree: ClusterTree,
    *,
    style: PromptStyle | str,
    level: int,
    num_beams: int = 1,
    batch_size: int = 16,
) -> EvalResult:
    """Unconstrained generation on held-out items (constrained outputs would always match)."""
    was_training = model.training
    model.eval()
    try:
        predictions = predict_serendipitous_clusters(
            model,
            processor,
            items,
            tree,
            style=style,
            level=level,
            num_beams=num_beams,
            top_k=num_beams,
            batch_size=batch_size,
        )
    finally:
        model.train(was_training)
    return score_predictions(predictions, [item.item_id for item in items], labels, num_beams)


def best_sibling_by_satisfaction(train_pairs: pd.DataFrame, tree: ClusterTree, level: int) -> dict[int, int]:
    """For each level-L cluster: its sibling with the highest mean satisfaction in ``train_pairs``.

    ``train_pairs`` has columns context_cluster, next_cluster, satisfaction. Clusters without pairs
    get the sibling with the highest mean satisfaction over all contexts (ties: lowest id).
    """
    means = train_pairs.groupby(["context_cluster", "next_cluster"])["satisfaction"].mean()
    overall = train_pairs.groupby("next_cluster")["satisfaction"].mean()
    guess: dict[int, int] = {}
    for cluster in tree.at_level(level):
        siblings = tree.siblings(cluster)
        if not siblings:
            continue
        own = means.loc[cluster] if cluster in means.index.get_level_values(0) else pd.Series(dtype=float)
        ranked = sorted(
            siblings, key=lambda s: (-own.get(s, float("-inf")), -overall.get(s, float("-inf")), s)
        )
        guess[cluster] = ranked[0]
    return guess


def non_llm_recall(
    guess: Mapping[int, int], items: Sequence[ItemMedia], labels: Mapping[int, set[int]], level: int
) -> float:
    if not items:
        return 0.0
    hits = sum(guess.get(item.cluster_at(level)) in labels[item.item_id] for item in items)
    return hits / len(items)

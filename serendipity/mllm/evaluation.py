"""Evaluate a model on the held-out context items, free and constrained, against the non-LLM guess.

The constrained decoding (answers restricted to the siblings of the item's level-L cluster) is what batch
inference writes to Feast, so its recall is the *served* recall; free decoding stays as a diagnostic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from serendipity.config import PipelineConfig
from serendipity.io import write_json_atomic
from serendipity.layout import WorkLayout
from serendipity.mllm.data import load_validation
from serendipity.mllm.generation import serendipitous_candidates
from serendipity.mllm.metrics import predict_serendipitous_clusters, score_predictions
from serendipity.mllm.model import load_model, model_version
from serendipity.mllm.prompts import ItemMedia
from serendipity.mllm.satisfaction_guess import best_sibling_guess_recall
from serendipity.tree import ClusterTree

EVALUATION_FILE = "evaluation.json"
Validation = tuple[ClusterTree, list[ItemMedia], dict[int, set[int]]]  # what load_validation returns


def validation_scores(
    config: PipelineConfig, model: Any, processor: Any, validation: Validation, *, constrained: bool
) -> dict[str, float | int]:
    """Match rate and recall (@k over the beams) of free or sibling-constrained decoding."""
    tree, items, labels = validation
    level, beams = config.mining.level, config.mllm.num_beams
    candidates = [serendipitous_candidates(tree, item.cluster_at(level), level) for item in items]
    predictions = predict_serendipitous_clusters(
        model,
        processor,
        items,
        tree,
        style=config.mllm.prompt_style,
        level=level,
        num_beams=beams,
        top_k=beams,
        constrained=constrained,
        candidates=candidates if constrained else None,
        batch_size=config.mllm.eval_batch_size,
    )
    return score_predictions(predictions, [item.item_id for item in items], labels, beams).as_dict()


def served_scores(
    config: PipelineConfig, model: Any, processor: Any, validation: Validation
) -> dict[str, float | int]:
    """The served (sibling-constrained) decoding's scores on the validation items."""
    was_training = model.training
    model.eval()
    try:
        return validation_scores(config, model, processor, validation, constrained=True)
    finally:
        model.train(was_training)


def evaluate_published(config: PipelineConfig, model_dir: str | Path | None = None) -> dict[str, Any]:
    """Match rate / recall of free generation, recall of constrained generation, and the non-LLM guess."""
    layout = WorkLayout.of(config)
    model_dir = Path(model_dir) if model_dir else layout.models_dir
    model, processor = load_model(model_dir)
    validation = load_validation(config)
    _, items, _ = validation
    report = {
        "model_version": model_version(model_dir),
        "prompt_style": config.mllm.prompt_style,
        "media_fallbacks": sum(item.media_fallback for item in items),
        "free": validation_scores(config, model, processor, validation, constrained=False),
        "constrained_to_siblings": served_scores(config, model, processor, validation),
        "non_llm_baseline": best_sibling_guess_recall(config),
    }
    write_json_atomic(report, layout.finetune_dir / EVALUATION_FILE)
    return report

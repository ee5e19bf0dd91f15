"""Evaluate a (published) model on the held-out context items, free and constrained, against the baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from serendipity.config import PipelineConfig
from serendipity.io import write_json_atomic
from serendipity.layout import WorkLayout
from serendipity.mllm.data import load_validation
from serendipity.mllm.finetune import best_sibling_guess_recall
from serendipity.mllm.generation import serendipitous_candidates
from serendipity.mllm.metrics import predict_serendipitous_clusters, score_predictions
from serendipity.mllm.model import load_model, model_version

EVALUATION_FILE = "evaluation.json"


def evaluate_published(config: PipelineConfig, model_dir: str | Path | None = None) -> dict[str, Any]:
    """Match rate / recall of free generation, recall of constrained generation, and the non-LLM guess."""
    layout, level = WorkLayout.of(config), config.mining.level
    model_dir = Path(model_dir) if model_dir else layout.models_dir
    model, processor = load_model(model_dir)
    tree, items, labels = load_validation(config)
    ids = [item.item_id for item in items]
    beams = config.mllm.num_beams
    common = {"style": config.mllm.prompt_style, "level": level, "num_beams": beams, "top_k": beams}
    free = predict_serendipitous_clusters(
        model, processor, items, tree, **common, batch_size=config.mllm.eval_batch_size
    )
    candidates = [serendipitous_candidates(tree, item.cluster_at(level), level) for item in items]
    constrained = predict_serendipitous_clusters(
        model,
        processor,
        items,
        tree,
        **common,
        constrained=True,
        candidates=candidates,
        batch_size=config.mllm.eval_batch_size,
    )
    report = {
        "model_version": model_version(model_dir),
        "prompt_style": config.mllm.prompt_style,
        "media_fallbacks": sum(item.media_fallback for item in items),
        "free": score_predictions(free, ids, labels, beams).as_dict(),
        "constrained_to_siblings": score_predictions(constrained, ids, labels, beams).as_dict(),
        "non_llm_baseline": best_sibling_guess_recall(config),
    }
    write_json_atomic(report, layout.finetune_dir / EVALUATION_FILE)
    return report

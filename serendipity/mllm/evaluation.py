"""Evaluate a model on the held-out context items, free and constrained, against the non-LLM guess.

The constrained decoding (answers restricted to the siblings of the item's level-L cluster) is what batch
inference writes to Feast, so its recall is the *served* recall; free decoding stays as a diagnostic.
The result (``PublishedEvaluation``) is ``finetune/evaluation.json``, written with ``write`` and read back
with ``PublishedEvaluation.read``; its JSON keys are the field names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from serendipity.config import PipelineConfig
from serendipity.io import write_json_atomic
from serendipity.layout import WorkLayout
from serendipity.mllm.data import load_validation
from serendipity.mllm.generation import serendipitous_candidates
from serendipity.mllm.metrics import EvalResult, predict_serendipitous_clusters, score_predictions
from serendipity.mllm.model import load_model, model_version
from serendipity.mllm.prompts import ItemMedia
from serendipity.mllm.satisfaction_guess import best_sibling_guess_recall
from serendipity.tree import ClusterTree

EVALUATION_FILE = "evaluation.json"
Validation = tuple[ClusterTree, list[ItemMedia], dict[int, set[int]]]  # what load_validation returns


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready dict (the fields that were set)."""
        return self.model_dump(mode="python", exclude_unset=True)


class DecodingScores(_Result):
    """Match rate, recall and recall@k (over the beams) of one decoding on the validation items."""

    items: int | None = None
    match_rate: float | None = None
    recall: float | None = None
    recall_at_k: float | None = None
    k: int | None = None

    @classmethod
    def of(cls, result: EvalResult) -> DecodingScores:
        return cls.model_validate(result.as_dict())


class GuessRecall(_Result):
    """Hits and recall of the best non-LLM sibling guess on the validation items, and its pairs' source."""

    items: int | None = None
    hits: int | None = None
    recall: float | None = None
    pairs_source: str | None = None


class PublishedEvaluation(_Result):
    """``finetune/evaluation.json``: a published model's free and constrained decoding vs the guess."""

    model_config = ConfigDict(frozen=True, extra="allow")  # keys of other versions are kept as they are

    model_version: str | None = None
    prompt_style: str | None = None
    media_fallbacks: int | None = None  # validation items whose media fell back to a placeholder
    free: DecodingScores | None = None
    constrained_to_siblings: DecodingScores | None = None  # what inference serves
    non_llm_baseline: GuessRecall | None = None

    def write(self, path: Path) -> Path:
        """Write the evaluation (atomically) to ``path``."""
        return write_json_atomic(self.to_json(), path)

    @classmethod
    def read(cls, path: Path) -> PublishedEvaluation:
        return cls.model_validate_json(path.read_bytes())


def validation_scores(
    config: PipelineConfig, model: Any, processor: Any, validation: Validation, *, constrained: bool
) -> DecodingScores:
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
    return DecodingScores.of(score_predictions(predictions, [item.item_id for item in items], labels, beams))


def served_scores(
    config: PipelineConfig, model: Any, processor: Any, validation: Validation
) -> DecodingScores:
    """The served (sibling-constrained) decoding's scores on the validation items."""
    was_training = model.training
    model.eval()
    try:
        return validation_scores(config, model, processor, validation, constrained=True)
    finally:
        model.train(was_training)


def evaluate_published(config: PipelineConfig, model_dir: str | Path | None = None) -> PublishedEvaluation:
    """Match rate / recall of free generation, recall of constrained generation, and the non-LLM guess;
    written to ``finetune/evaluation.json``."""
    layout = WorkLayout.of(config)
    model_dir = Path(model_dir) if model_dir else layout.models_dir
    model, processor = load_model(model_dir)
    validation = load_validation(config)
    _, items, _ = validation
    report = PublishedEvaluation(
        model_version=model_version(model_dir),
        prompt_style=config.mllm.prompt_style,
        media_fallbacks=sum(item.media_fallback for item in items),
        free=validation_scores(config, model, processor, validation, constrained=False),
        constrained_to_siblings=served_scores(config, model, processor, validation),
        non_llm_baseline=GuessRecall.model_validate(best_sibling_guess_recall(config)),
    )
    report.write(layout.finetune_dir / EVALUATION_FILE)
    return report

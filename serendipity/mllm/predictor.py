"""Batch-inference predictor: loads the model once, turns decoded items into ranked cluster predictions.

Used by the Ray Data inference job as a callable class; media are decoded beforehand on CPU with
``item_media_from_row`` so the (possibly GPU) actor only runs the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from serendipity.mllm.generation import Prediction, serendipitous_candidates
from serendipity.mllm.metrics import max_answer_tokens, predict_serendipitous_clusters
from serendipity.mllm.model import load_model, model_version
from serendipity.mllm.nominator import nominate_items, predictions_of, scores_all_siblings
from serendipity.mllm.prompts import ItemMedia, PromptStyle, item_media_from_row
from serendipity.mllm.scoring import try_score_siblings
from serendipity.nomination.prior import TransitionPrior
from serendipity.nomination.similarity import TextSimilarity
from serendipity.tree import ClusterTree

__all__ = ["ItemMedia", "MllmPredictor", "item_media_from_row"]


class MllmPredictor:
    """``predict(items)`` -> per item up to ``top_k`` predictions (best first) of distinct clusters."""

    def __init__(
        self,
        model_dir: str | Path,
        tree: ClusterTree,
        prompt_style: PromptStyle | str,
        num_frames: int,
        level: int,
        constrained: bool = True,
        num_beams: int = 3,
        top_k: int = 1,
        *,
        restrict_to_siblings: bool = True,
        batch_size: int = 16,
        device: str | None = None,
        dtype: Any = None,
        prior: TransitionPrior | None = None,
        prior_weight: float = 0.0,
        score_all_max_siblings: int = 64,
        similarity: TextSimilarity | None = None,
        text_weight: float = 0.0,
    ) -> None:
        if not 1 <= top_k <= num_beams:
            raise ValueError(f"top_k must be between 1 and num_beams={num_beams}, got {top_k}")
        self.model, self.processor = load_model(model_dir, device=device, dtype=dtype)
        self.model_version = model_version(model_dir)
        self.tree = tree
        self.style = PromptStyle(prompt_style)
        self.num_frames = num_frames
        self.level = level
        self.constrained = constrained
        self.num_beams = num_beams
        self.top_k = top_k
        self.restrict_to_siblings = restrict_to_siblings
        self.batch_size = batch_size
        self.max_new_tokens = max_answer_tokens(self.processor, tree, self.style, level)
        self.prior = prior
        self.prior_weight = prior_weight
        self.similarity = similarity
        self.text_weight = text_weight if similarity is not None else 0.0
        self.scores_all = (
            constrained and restrict_to_siblings and scores_all_siblings(tree, level, score_all_max_siblings)
        )
        if prior is not None and prior_weight > 0:
            self.model_version = f"{self.model_version}+{prior.info.version}"

    def candidates(self, items: Sequence[ItemMedia]) -> list[list[int]] | None:
        """Per item, the clusters an answer may name: siblings of its level-L cluster."""
        if not self.restrict_to_siblings:
            return None
        return [
            serendipitous_candidates(self.tree, item.cluster_at(self.level), self.level) for item in items
        ]

    def predict(self, items: Sequence[ItemMedia]) -> list[list[Prediction]]:
        """Every sibling scored and combined with the prior when the sibling sets are small enough;
        constrained beams (the model alone) otherwise."""
        if self.scores_all:
            scores = try_score_siblings(
                self.model,
                self.processor,
                items,
                self.tree,
                style=self.style,
                level=self.level,
                batch_size=self.batch_size,
                max_new_tokens=self.max_new_tokens,
            )
            if scores is None:
                self.scores_all = False
                return self.predict(items)
            nominations = nominate_items(
                items,
                self.level,
                self.tree,
                self.prior,
                self.prior_weight,
                scores,
                self.similarity,
                self.text_weight,
            )
            return [predictions_of(n, self.tree, self.top_k) for n in nominations]
        return predict_serendipitous_clusters(
            self.model,
            self.processor,
            items,
            self.tree,
            style=self.style,
            level=self.level,
            constrained=self.constrained,
            num_beams=self.num_beams,
            top_k=self.top_k,
            candidates=self.candidates(items),
            batch_size=self.batch_size,
            max_new_tokens=self.max_new_tokens,
        )

    def __call__(self, items: Sequence[ItemMedia]) -> list[list[Prediction]]:
        return self.predict(items)


def predictor_from_config(
    config: Any, model_dir: str | Path | None = None, prior_weight: float = 0.0, text_weight: float = 0.0
) -> MllmPredictor:
    """A predictor with the pipeline config's settings; ``model_dir`` defaults to the published model.

    With ``prior_weight`` > 0 the model's scores are combined with the transition prior of the work dir.
    """
    from serendipity.layout import WorkLayout
    from serendipity.mllm.data import load_tree
    from serendipity.mllm.precision import inference_device, resolve_precision, torch_dtype
    from serendipity.nomination.prior import load_prior
    from serendipity.schema import ITEMS_FILE

    layout = WorkLayout.of(config)
    device = inference_device(config.inference.num_gpus_per_actor)
    return MllmPredictor(
        model_dir or layout.models_dir,
        load_tree(layout),
        config.mllm.prompt_style,
        config.mllm.num_frames,
        config.mining.level,
        constrained=config.inference.constrained,
        num_beams=max(config.mllm.num_beams, config.inference.top_k),
        top_k=config.inference.top_k,
        restrict_to_siblings=config.inference.restrict_to_siblings,
        batch_size=config.inference.batch_size,
        device=device,
        dtype=torch_dtype(resolve_precision(config.mllm.precision, device)) if device else None,
        prior=load_prior(layout) if prior_weight > 0 else None,
        prior_weight=prior_weight,
        score_all_max_siblings=config.inference.score_all_max_siblings,
        similarity=(
            TextSimilarity(layout.catalog_dir() / ITEMS_FILE, load_tree(layout), config.mining.level)
            if text_weight > 0
            else None
        ),
        text_weight=text_weight,
    )

"""The simulated live experiment end to end: simulate every seed, compute the metrics, write
``impressions.parquet`` and ``experiment.json`` under ``WorkLayout.experiment_dir``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from serendipity.config import PipelineConfig
from serendipity.eval.results import ExperimentPaths, ExperimentSummary
from serendipity.layout import WorkLayout


@dataclass(frozen=True)
class ExperimentResult:
    impressions: pd.DataFrame
    summary: ExperimentSummary  # what experiment.json holds
    paths: ExperimentPaths


def _item_vector_lookup(config: PipelineConfig) -> Callable[[np.ndarray], np.ndarray]:
    """Item ids -> their SASRec vectors (zeros for items the retriever does not know)."""
    from serendipity.retrieval.artifacts import Retriever

    retriever = Retriever.load(WorkLayout.of(config).retriever_dir)
    vectors = retriever.item_vectors()
    vocabulary = retriever.vocabulary

    def lookup(item_ids: np.ndarray) -> np.ndarray:
        indices = vocabulary.indices(item_ids)
        found = np.zeros((len(indices), vectors.shape[1]), dtype=vectors.dtype)
        known = indices > 0
        found[known] = vectors[indices[known] - 1]
        return found

    return lookup


def run_live_experiment(config: PipelineConfig) -> ExperimentResult:
    """Simulate ``config.eval`` (a local Ray is started when none is running) and write the outputs."""
    import ray

    from serendipity.eval.inputs import load_pre_experiment
    from serendipity.eval.simulate import run_experiment
    from serendipity.eval.summary import MetricContext, build_report, write_outputs
    from serendipity.world import UserSimulator

    if not ray.is_initialized():
        ray.init(configure_logging=False, include_dashboard=False)
    pre = load_pre_experiment(config)
    world = UserSimulator.load(config.dataset_dir)
    impressions = run_experiment(config)
    context = MetricContext(pre, _item_vector_lookup(config), world.visual_richness)
    summary = build_report(impressions, context, config)
    paths = write_outputs(impressions, summary, WorkLayout.of(config).experiment_dir)
    return ExperimentResult(impressions, summary, paths)

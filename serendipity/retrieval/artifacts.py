"""The retriever directory: sequence model + item vocabulary + cluster index + offline metrics.

``train_and_publish_retriever`` trains (Ray Train), evaluates against popularity on the time-based holdout,
builds the index from the model's item embeddings and replaces ``WorkLayout.retriever_dir`` atomically.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from serendipity.config import PipelineConfig
from serendipity.io import atomic_directory
from serendipity.layout import RETRIEVER_METRICS_FILE, WorkLayout
from serendipity.retrieval.data import ItemVocabulary, TrainingData, load_training_data
from serendipity.retrieval.holdout_figures import RetrieverMetrics
from serendipity.retrieval.index import ClusterIndex
from serendipity.retrieval.metrics import holdout_report
from serendipity.retrieval.model import SASRec

log = logging.getLogger(__name__)
MODEL_SUBDIR = "model"
POPULARITY_FILE = "popularity.npy"


@dataclass(frozen=True)
class Retriever:
    """Everything online retrieval needs, loaded from one directory."""

    model: SASRec
    vocabulary: ItemVocabulary
    index: ClusterIndex
    popularity: np.ndarray  # engaged count per item index (0 = padding) before the training cutoff

    def item_vectors(self) -> np.ndarray:
        return self.model.item_vectors().detach().numpy()

    def save(self, directory: str | Path, metrics: RetrieverMetrics | None = None) -> Path:
        with atomic_directory(directory) as tmp:
            self.model.save(tmp / MODEL_SUBDIR)
            self.vocabulary.save(tmp)
            self.index.save(tmp)
            np.save(tmp / POPULARITY_FILE, self.popularity)
            if metrics is not None:
                metrics.write(tmp / RETRIEVER_METRICS_FILE)
        return Path(directory)

    @classmethod
    def load(cls, directory: str | Path) -> Retriever:
        directory = Path(directory)
        if not (directory / MODEL_SUBDIR).is_dir():
            raise FileNotFoundError(f"no retriever at {directory}; run ray_jobs/train_retriever.py first")
        return cls(
            SASRec.load(directory / MODEL_SUBDIR),
            ItemVocabulary.load(directory),
            ClusterIndex.load(directory),
            np.load(directory / POPULARITY_FILE),
        )


def assemble(model: SASRec, data: TrainingData, config: PipelineConfig) -> Retriever:
    """The retriever of a trained model: its item embeddings indexed by level-L cluster."""
    vectors = model.item_vectors().detach().numpy()
    index = ClusterIndex.build(
        data.vocabulary.item_ids,
        data.vocabulary.cluster_ids,
        vectors,
        flat_max_items=config.retrieval.flat_index_max_items,
        hnsw_m=config.retrieval.hnsw_m,
    )
    return Retriever(model, data.vocabulary, index, data.popularity)


def train_and_publish_retriever(config: PipelineConfig, *, use_ray: bool = True) -> RetrieverMetrics:
    """Train, evaluate, index and publish the retriever; returns the metrics written next to it."""
    from serendipity.retrieval.train import fit_sasrec, train_with_ray

    data = load_training_data(config)
    if use_ray:
        from serendipity.ray_local import init_local_ray

        init_local_ray(config.ray)
        model = train_with_ray(config)
    else:
        model, _ = fit_sasrec(data, config.retrieval)
    metrics = replace(
        holdout_report(model, data, config.retrieval.eval_k),
        level=config.mining.level,
        clusters=len(set(data.vocabulary.cluster_ids.tolist())),
    )
    directory = WorkLayout.of(config).retriever_dir
    assemble(model, data, config).save(directory, metrics)
    k = config.retrieval.eval_k
    log.info(
        "retriever at %s: SASRec ndcg@%d %.4f vs popularity %.4f",
        directory,
        k,
        metrics.sasrec.ndcg,
        metrics.popularity.ndcg,
    )
    return metrics

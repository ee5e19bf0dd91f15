"""Offline quality on the time-based holdout: hit rate@k and NDCG@k, model vs popularity."""

from __future__ import annotations

import numpy as np
import torch

from serendipity.retrieval.data import TrainingData, pad_left
from serendipity.retrieval.holdout_figures import RankingFigures, RetrieverMetrics
from serendipity.retrieval.model import SASRec


def ranking_metrics(scores: np.ndarray, targets: np.ndarray, k: int) -> RankingFigures:
    """hit_rate@k and ndcg@k of one relevant item per row; ``scores`` is (rows, items), column = index - 1."""
    if len(targets) == 0:
        return RankingFigures(hit_rate=0.0, ndcg=0.0, users=0)
    target_scores = scores[np.arange(len(targets)), targets - 1]
    # Rank = items scoring strictly higher; ties resolve in the target's favour for every method alike.
    ranks = (scores > target_scores[:, None]).sum(axis=1)
    hits = ranks < k
    gains = np.where(hits, 1.0 / np.log2(ranks + 2.0), 0.0)
    return RankingFigures(hit_rate=float(hits.mean()), ndcg=float(gains.mean()), users=int(len(targets)))


@torch.inference_mode()
def model_scores(model: SASRec, inputs: list[np.ndarray], batch_size: int = 512) -> np.ndarray:
    """Scores of every item for each input sequence, (rows, items)."""
    model.eval()
    length = model.config.max_length
    items = model.item_vectors()
    out = []
    for start in range(0, len(inputs), batch_size):
        batch = torch.from_numpy(pad_left(inputs[start : start + batch_size], length))
        out.append((model.query(batch) @ items.T).numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.num_items), dtype=np.float32)


def holdout_report(model: SASRec, data: TrainingData, k: int) -> RetrieverMetrics:
    """The model's and the popularity baseline's metrics on the holdout, and which one wins."""
    scores = model_scores(model, data.holdout_inputs)
    popularity = np.broadcast_to(
        data.popularity[1:].astype(np.float64), (len(data.holdout_targets), len(data.vocabulary))
    )
    sasrec = ranking_metrics(scores, data.holdout_targets, k)
    baseline = ranking_metrics(popularity, data.holdout_targets, k)
    return RetrieverMetrics(
        k=k,
        sasrec=sasrec,
        popularity=baseline,
        beats_popularity=sasrec.ndcg > baseline.ndcg,
        data=data.summary(),
    )

"""The ``retrieval:`` section: the sequence model and the per-cluster item index."""

from __future__ import annotations

from pydantic import Field

from serendipity.config.base import Fraction, Section


class RetrievalConfig(Section):
    """The SASRec sequence model, its point-in-time training data, and the per-cluster item index."""

    embedding_dim: int = Field(64, ge=8)
    max_history: int = Field(20, ge=1)
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(256, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    num_negatives: int = Field(256, ge=1)  # shared uniform negatives of the sampled softmax
    weight_decay: float = Field(0.0, ge=0)
    holdout_fraction: Fraction = 0.2  # the last share of the log's time range, held out for evaluation
    eval_k: int = Field(10, ge=1)
    seed: int = 0
    num_workers: int = Field(1, ge=1)  # Ray Train workers
    use_gpu: bool = False
    flat_index_max_items: int = Field(50_000, ge=1)  # a cluster above this gets an HNSW index
    hnsw_m: int = Field(32, ge=4)

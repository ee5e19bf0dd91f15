"""The ``tree:`` section: building the cluster tree of a dataset that comes without one."""

from __future__ import annotations

from pydantic import Field

from serendipity.config.base import Branching, Section


class TreeBuildConfig(Section):
    """Building a 4-level traffic-balanced tree for datasets without one (``spark_jobs/build_tree.py``)."""

    branching: Branching = (3, 3, 3, 2)
    seed: int = 0
    image_weight: float = Field(0.5, ge=0)  # weight of thumbnail features next to the unit text embedding
    balance_tolerance: float = Field(0.05, ge=0, le=1)  # a child may hold up to (1 + tol) / k of its parent
    refine_iterations: int = Field(5, ge=0)  # balanced k-means rounds after the k-means start
    embed_batch_size: int = Field(64, ge=1)
    embed_threads: int = Field(0, ge=0)  # torch threads per Spark Python worker; 0 leaves torch's default
    terms_per_label: int = Field(1, ge=1, le=3)  # representative terms naming each cluster

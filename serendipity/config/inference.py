"""The ``inference:`` section: batch inference over the popular corpus (``ray_jobs/infer.py``)."""

from __future__ import annotations

from pydantic import Field

from serendipity.config.base import Section


class InferenceConfig(Section):
    num_actors: int = Field(1, ge=1)
    batch_size: int = Field(16, ge=1)
    num_gpus_per_actor: float | None = Field(None, ge=0)  # None: one per actor when the cluster has GPUs
    decode_concurrency: int = Field(2, ge=1)
    top_k: int = Field(3, ge=1)
    constrained: bool = True
    # Sibling sets up to this size are scored whole (teacher forcing); larger ones use constrained beams.
    score_all_max_siblings: int = Field(64, ge=1)
    restrict_to_siblings: bool = True
    tasks_in_flight_per_actor: int = Field(2, ge=1)  # batches queued per actor: bounds decoded frames held
    audit_log: str | None = None  # when set, each actor appends "item_id<TAB>model_version" per inference
    in_process_below: int = Field(32, ge=0)  # CPU runs with fewer items to infer skip Ray Data's startup

"""The ``ray:`` section: the local Ray of a one-machine run (started by ``serendipity.ray_local``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from serendipity.config.base import Section


class RayConfig(Section):
    """The local Ray of a one-machine run (ignored when joining a cluster, ``RAY_ADDRESS``), and where
    Ray Train places its workers on any cluster."""

    include_dashboard: bool = False
    num_cpus: int | None = Field(None, ge=1)  # None: every core
    object_store_mb: int | None = Field(512, ge=80)  # None: Ray's default (30% of the machine's memory)
    idle_worker_kill_ms: int = Field(1000, ge=0)  # an idle worker past the soft limit lives this long
    # Ray Train's ScalingConfig.placement_strategy (fine-tuning, retriever): PACK fills one node first,
    # STRICT_SPREAD puts each worker on a node of its own (as many nodes as workers, else it waits)
    train_placement: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"

"""The ``ray:`` section: the local Ray of a one-machine run (started by ``serendipity.ray_local``)."""

from __future__ import annotations

from pydantic import Field

from serendipity.config.base import Section


class RayConfig(Section):
    """The local Ray of a one-machine run; ignored when joining a cluster (``RAY_ADDRESS``)."""

    include_dashboard: bool = False
    num_cpus: int | None = Field(None, ge=1)  # None: every core
    object_store_mb: int | None = Field(512, ge=80)  # None: Ray's default (30% of the machine's memory)
    idle_worker_kill_ms: int = Field(1000, ge=0)  # an idle worker past the soft limit lives this long

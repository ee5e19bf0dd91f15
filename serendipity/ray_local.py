"""The Ray a one-machine run starts, per the ``ray:`` section of the pipeline config (``RayConfig``).

A job joins the Ray already initialised, else ``RAY_ADDRESS``'s cluster, else starts a local Ray bounded
by that section: no dashboard (its processes hold ~0.3 GiB for nobody to look at in a batch run), a
bounded object store (objects past it spill to disk), and idle workers ended soon after their tasks.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from serendipity.config import RayConfig
from serendipity.ray_compat import init_with_system_config

# Ray Train's placement-group cleaner polls the state API, which lives in the dashboard: without one it
# warns every few seconds for the whole fine-tuning run (the placement group still goes with the run's Ray).
_STATE_API_POLLER_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"


def quiet_state_api_poller() -> None:
    """Worker set-up hook of a dashboard-less Ray: silences the cleaner's "state API unavailable" warnings."""
    logging.getLogger(_STATE_API_POLLER_LOGGER).setLevel(logging.ERROR)


_HOOK = f"{__name__}.{quiet_state_api_poller.__name__}"


def init_local_ray(settings: RayConfig, **options: Any) -> None:
    """``ray.init`` unless initialised: ``RAY_ADDRESS``'s cluster when set, else a local Ray per ``settings``.

    ``options`` go to ``ray.init`` either way (e.g. ``log_to_driver=False``).
    """
    import ray

    if ray.is_initialized():
        return
    options.setdefault("configure_logging", False)
    if os.environ.get("RAY_ADDRESS"):
        ray.init(**options)
        return
    init_with_system_config(
        {
            "idle_worker_killing_time_threshold_ms": settings.idle_worker_kill_ms,
            "enable_worker_prestart": False,
            "prestart_worker_first_driver": False,
        },
        include_dashboard=settings.include_dashboard,
        num_cpus=settings.num_cpus,
        object_store_memory=settings.object_store_mb * 2**20 if settings.object_store_mb else None,
        **({} if settings.include_dashboard else {"runtime_env": {"worker_process_setup_hook": _HOOK}}),
        **options,
    )

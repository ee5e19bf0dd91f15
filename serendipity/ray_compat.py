"""The private Ray APIs the project uses, each wrapped once here, for lack of a public one.

Checked against Ray 2.60.0 (``RAY_VERSION_CHECKED``, the release constraints.txt pins); a test fails when
the installed Ray differs, so a Ray upgrade re-checks both:

- A running Serve's HTTP options: ``serve.status()`` carries no host, and
  ``ServeInstanceDetails.http_options`` comes only through the dashboard's REST API, which a local run
  does not start. The controller's client that ``serve.status()`` itself goes through,
  ``ray.serve.context._get_global_client``, has them.
- Ray's system config (idle-worker killing, worker prestart): ``ray.init`` takes it only as the private
  keyword ``_system_config`` ("RayConfig override dict; testing only" in its docstring); the
  ``RAY_<name>`` environment variables that also set it are, by Ray's own account, a developer tool
  outside the public documentation.
"""

from __future__ import annotations

from typing import Any

RAY_VERSION_CHECKED = "2.60.0"


def serve_http_host() -> str | None:
    """The host Serve's HTTP proxies listen on, asked of the running Serve controller; None without one."""
    from ray.serve.context import _get_global_client

    client = _get_global_client(raise_if_no_controller_running=False)
    return None if client is None else client.http_config.host


def init_with_system_config(system_config: dict[str, Any], **options: Any) -> None:
    """``ray.init(**options)`` starting a new local Ray with Ray's internal ``system_config`` entries."""
    import ray

    ray.init(_system_config=system_config, **options)

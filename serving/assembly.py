"""Serving assembled in one place: ``served_app`` starts what answering a pipeline config takes and ends
it on exit. ``serendipity serve run`` (so ``serve start`` and ``make demo``), the benchmarks and the
tests' Serve app all go through it:

1. the explorer's thumbnails and frames, rendered to files (decoded here, never while serving);
2. Serve's HTTP proxy: on loopback behind the admission front, or on ``serving.host`` without one;
3. the application (ingress -> recommender), and any extra ones beside it (the benchmark's no-op);
4. the admission front (HAProxy, ``serving/admission.py``) on ``serving.host:serving.port``.

The caller connects to Ray first (``ray.init``, a local Ray or a cluster). The online store is the one
the pipeline config names (``features.feature_store_yaml``): a file for SQLite, a server of its own for
Redis; the recommender opens it, with its deadlines and re-opening, in each replica.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serendipity.config import PipelineConfig, ServingConfig, load_config
from serendipity.layout import WorkLayout

if TYPE_CHECKING:
    from ray.serve import Application

    from serving.settings import AppArgs

APP_NAME = "serendipity"


@dataclass(frozen=True)
class RunningApp:
    serving: ServingConfig  # as served (its ports and front)
    url: str  # where clients go: the admission front, or Serve's proxy when there is none
    front: subprocess.Popen | None  # the HAProxy process, None without a front


def admission_config_file(config: PipelineConfig) -> Path:
    """Where the front's HAProxy configuration is written: ``WORK_DIR/serve/admission.cfg``."""
    return WorkLayout.of(config).work_dir / "serve" / "admission.cfg"


@contextmanager
def served_app(
    config_path: Path,
    *,
    serving: ServingConfig | None = None,
    args: AppArgs | None = None,
    ingress_options: dict[str, Any] | None = None,
    extra_apps: Mapping[str, tuple[str, Application]] | None = None,
    front_config_path: Path | None = None,
    app_name: str = APP_NAME,
) -> Iterator[RunningApp]:
    """The app of ``config_path`` answering on ``serving`` (default: the config's ``serving`` section;
    pass another for other ports or no front) for the ``with`` block; ``extra_apps`` maps a name to a
    (route prefix, application) served beside it; the front's HAProxy file goes to ``front_config_path``
    (default ``admission_config_file``). On exit the front stops gracefully and the apps are
    deleted (Serve itself keeps running: its owner shuts it down)."""
    from ray import serve

    from serendipity.explorer.rendered_media import render_media
    from serving.admission import LOOPBACK, reachable_host, run_front
    from serving.app import compose
    from serving.settings import AppArgs

    config = load_config(config_path)
    serving = serving or config.serving
    if serving.serve_haproxy.enabled and os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") != "1":
        raise RuntimeError(
            f"serving.serve_haproxy.enabled in {config_path} needs Ray started with "
            "RAY_SERVE_ENABLE_HA_PROXY=1 (serving.settings.use_throughput_env before ray.init, as "
            "`serendipity serve run` does; on a "
            "cluster, in the Ray pods' environment): this Ray would serve through Serve's Python proxy"
        )
    render_media(config)
    front = serving.admission.enabled
    serve_host = LOOPBACK if front else serving.host
    serve.start(
        http_options={"host": serve_host, "port": serving.serve_port, "request_timeout_s": serving.backstop_s}
    )
    args = args or AppArgs(config_path=str(config_path))
    apps = {app_name: ("/", compose(args, ingress_options)), **(extra_apps or {})}
    with ExitStack() as stack:
        for name in apps:
            stack.callback(serve.delete, name)
        for name, (route_prefix, app) in apps.items():
            serve.run(app, name=name, route_prefix=route_prefix)
        process = None
        if front:
            front_file = front_config_path or admission_config_file(config)
            process = stack.enter_context(run_front(serving, front_file))
        url = f"http://{reachable_host(serving.host)}:{serving.port}"
        yield RunningApp(serving, url, process)

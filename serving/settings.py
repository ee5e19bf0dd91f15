"""Arguments of the Serve application and of the recommender's ``user_config``, and path resolution.

Paths given here are operator settings (serve config YAML, environment), never request fields.
A relative path resolves against the repository root, so ``serve run`` works from any directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from serendipity.config import ServingConfig

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_ENV = "SERENDIPITY_CONFIG"
TOKEN_ENV = "SERENDIPITY_API_TOKEN"
DEFAULT_CONFIG = "configs/demo.yaml"


# Ray Serve's request-path settings for few cores (read when Ray starts its processes, so they are set
# before ``ray.init``; on a cluster they belong in the Ray pods' environment). Measured on 2 cores
# (bench/results/serve_profile/): user code on the replica's own event loop, the router on the caller's
# loop (no thread hop per request), gRPC between deployments, Serve's logs to their files only (not
# also to each worker's stderr, which Ray's log monitor tails), written in buffered batches.
THROUGHPUT_ENV = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
    "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1000",
    "RAY_SERVE_LOG_TO_STDERR": "0",
}

# Serve's logging_config of the deployments: JSON, and no access line per request or handle call (the
# admission front logs every request with its id, status and time; serving/request_log.py every
# /recommend with what was answered), so a request costs one log line in Python, not three.
SERVE_LOGGING = {"encoding": "JSON", "enable_access_log": False}


def serve_haproxy_env(serving: ServingConfig, state_dir: Path | None = None) -> dict[str, str]:
    """Ray's environment for ``serving.serve_haproxy``: nothing when it is off (Serve's Python proxy);
    else Serve's HAProxy with its ports, one thread, the replicas' drain, and its files under
    ``state_dir`` (None: Ray's defaults under /tmp/haproxy-serve, one Serve per machine)."""
    options = serving.serve_haproxy
    if not options.enabled:
        return {}
    env = {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_STATS_PORT": str(options.stats_port),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(options.metrics_port),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(options.fallback_port),
        "RAY_SERVE_HAPROXY_NBTHREAD": str(options.threads),
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": str(options.drain_s),
    }
    if state_dir is not None:
        env |= {
            "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(state_dir / "haproxy.cfg"),
            "RAY_SERVE_HAPROXY_SOCKET_PATH": str(state_dir / "admin.sock"),
            "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(state_dir / "metrics.sock"),
            "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(state_dir),
            "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(state_dir / "server-state"),
        }
    return env


def ray_serving_env(serving: ServingConfig | None = None, state_dir: Path | None = None) -> dict[str, str]:
    """What Ray's processes need in their environment to serve ``serving``: ``THROUGHPUT_ENV`` and
    ``serve_haproxy_env``."""
    return THROUGHPUT_ENV | (serve_haproxy_env(serving, state_dir) if serving is not None else {})


def use_throughput_env(serving: ServingConfig | None = None, state_dir: Path | None = None) -> None:
    """``ray_serving_env`` in this process's environment (values already set win), before Ray starts."""
    if state_dir is not None and serving is not None and serving.serve_haproxy.enabled:
        state_dir.mkdir(parents=True, exist_ok=True)
    for name, value in ray_serving_env(serving, state_dir).items():
        os.environ.setdefault(name, value)


class AppArgs(BaseModel):
    """``args`` of ``serving.app:build_app`` in a serve config YAML or a KubeRay RayService."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    config_path: str | None = None  # pipeline YAML; None: $SERENDIPITY_CONFIG, then configs/demo.yaml
    feature_store_yaml: str | None = None  # None: the pipeline config's features.feature_store_yaml
    token_env: str = TOKEN_ENV  # name of the environment variable holding the optional bearer token


class RecommenderUserConfig(BaseModel):
    """``user_config`` of the recommender deployment: changing it hot-swaps the loaded model and index.

    ``retriever_version`` labels what is loaded (and is reported by /readyz); ``overrides`` are dotted
    pipeline-config keys, e.g. ``{"retrieval.epochs": 5}``, applied on top of ``config_path``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    retriever_version: str | None = None
    config_path: str | None = None  # None: the one the application was built with
    feature_store_yaml: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)


def resolve_path(path: str | Path) -> Path:
    """An absolute path; a relative one is taken relative to the repository root."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else (PROJECT_ROOT / candidate).resolve()


def pipeline_config_path(explicit: str | None) -> Path:
    """The pipeline YAML: ``explicit``, else $SERENDIPITY_CONFIG, else configs/demo.yaml of the repository."""
    return resolve_path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def proxy_host(default: str) -> str:
    """The host Serve's HTTP proxy listens on (asked of the Serve controller), else ``default``."""
    try:
        from serendipity.ray_compat import serve_http_host

        host = serve_http_host()
        return host if host is not None else default
    except Exception:  # noqa: BLE001 - outside a Serve cluster: what the pipeline config says
        return default


def optional_path(path: str | None) -> str | None:
    return None if path is None else str(resolve_path(path))

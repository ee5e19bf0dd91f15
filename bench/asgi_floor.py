"""The floor under the Serve app: the same recommender and HTTP API on bare uvicorn, no Serve.

    python -m bench.asgi_floor --config PIPELINE.yaml --port 8100 [--workers N]

Each uvicorn worker (default: one per core) loads the recommender as a Serve replica does
(``serving.deployments.load_recommender``, the store check, the warm-up) and serves the app
``serving.api.build_api`` builds (the same routes, request model, guard, shedding and failure answers)
around a local backend: each request answered by one worker thread holding the model (a replica's
rule: one thread uses the loaded model at a time), no batching, no proxy, no actor hop. Torch runs
one thread per worker (``OMP_NUM_THREADS=1``, what Ray gives a replica with under one CPU) and
uvicorn writes no access log; with ``--request-log-dir`` each worker writes the request log
(``serving.request_log``, a line per /recommend) to a file of its own there, as a replica does.
``bench.serve_load`` runs it next to the Serve app with the same load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import FastAPI

CONFIG_ENV = "SERENDIPITY_FLOOR_CONFIG"
REQUEST_LOG_DIR_ENV = "SERENDIPITY_FLOOR_REQUEST_LOG_DIR"


class LocalBackend:
    """The ``RecommenderBackend`` of the floor: the loaded recommender in this process."""

    def __init__(self, config_path: str) -> None:
        from serving.deployments import load_recommender, warm_up
        from serving.settings import RecommenderUserConfig
        from serving.store_monitor import StoreMonitor

        self._loaded = load_recommender(RecommenderUserConfig(config_path=config_path))
        serving = self._loaded.config.serving
        self._monitor = StoreMonitor(
            lambda: self._loaded, serving.store_check_interval_s, serving.feature_timeout_ms / 1000
        )
        self._monitor.check(self._loaded)
        warm_up(self._loaded)
        self._model = ThreadPoolExecutor(1, thread_name_prefix="recommender")

    async def recommend(self, request: Any) -> dict[str, Any]:
        from serving.deployments import answer_all

        loop = asyncio.get_running_loop()
        (answer,) = await loop.run_in_executor(self._model, answer_all, self._loaded, [request.model_dump()])
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def readiness(self) -> dict[str, Any]:
        from serving.deployments import readiness_of

        return readiness_of(self._loaded)

    async def source(self) -> dict[str, Any]:
        return self._loaded.source.model_dump()


def build_floor() -> FastAPI:
    """The uvicorn factory of each worker: the pipeline config comes from ``$SERENDIPITY_FLOOR_CONFIG``."""
    from serendipity.config import load_config
    from serving.api import build_api
    from serving.request_log import PATH_ENV

    config_path = os.environ[CONFIG_ENV]
    log_dir = os.environ.get(REQUEST_LOG_DIR_ENV)
    if log_dir:
        os.environ[PATH_ENV] = str(Path(log_dir) / f"requests_floor_{os.getpid()}.jsonl")
    backend = LocalBackend(config_path)
    return build_api(backend, load_config(Path(config_path)).serving, token=None, source=backend.source)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--request-log-dir", type=Path, help="each worker's request log goes here")
    args = parser.parse_args(argv)
    os.environ[CONFIG_ENV] = str(args.config.resolve())
    if args.request_log_dir is not None:
        os.environ[REQUEST_LOG_DIR_ENV] = str(args.request_log_dir.resolve())
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    uvicorn.run(
        "bench.asgi_floor:build_floor",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()

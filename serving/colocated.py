"""The colocated topology (``serving.topology: colocated``): one deployment holds the HTTP API and the
loaded recommender, so a request costs Serve's proxy and one replica, not an ingress replica and a
routing hop to a recommender replica besides.

It is a ``RecommenderCore`` (the split recommender's batching, store monitor, warm-up and hot swap on
``user_config``) behind the same FastAPI app (``serving.api.build_api``: guard, shedding, request ids),
with the split ingress's deadline: past ``serving.recommender_timeout_ms`` the request gets the popular
items it did not name, marked ``degraded`` (``serving.ingress.fallback_payload``). What it cannot do is
answer for a lost replica: the API dies with the model, and Serve's proxy routes to the other replicas.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from fastapi import FastAPI
from ray import serve

from serendipity.config import ServingConfig
from serving.api import build_api
from serving.deployments import RecommenderCore
from serving.guard import public_hosts, require_token_off_loopback
from serving.ingress import fallback_payload
from serving.models import RecommendRequest
from serving.settings import SERVE_LOGGING, proxy_host

log = logging.getLogger("serendipity.serving")


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=48, logging_config=SERVE_LOGGING)
@serve.ingress()
class ColocatedRecommender(RecommenderCore):
    """API and recommender in one replica; the backend of its own FastAPI app."""

    def __init__(
        self, config_path: str, serving: ServingConfig, token_env: str, feature_store_yaml: str | None = None
    ) -> None:
        self._serving = serving
        self._token = os.environ.get(token_env) or None
        require_token_off_loopback(public_hosts(serving, proxy_host(serving.host)), self._token, token_env)
        super().__init__(config_path, feature_store_yaml)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_api(self, self._serving, self._token, source=self._source)

    async def _source(self) -> dict[str, Any]:
        return self.pipeline_source()

    async def recommend(self, request: RecommendRequest) -> dict[str, Any]:
        timeout_s = self._serving.recommender_timeout_s
        pending = asyncio.ensure_future(self.answer(request.model_dump()))
        done, _ = await asyncio.wait({pending}, timeout=timeout_s)
        if done:
            return pending.result()
        pending.cancel()  # a batch not yet started leaves it out; one running finishes for nobody
        log.warning("recommender past the %.0f ms deadline: fallback", timeout_s * 1000)
        return fallback_payload(self.popular_items(self._serving.max_k), request)

    async def readiness(self) -> dict[str, Any]:
        return self.status()

    async def __del__(self) -> None:
        self.stop_monitor()
        await super().__del__()  # the ASGI wrapper's (serve.ingress): the app's lifespan shutdown

"""The HTTP ingress deployment: FastAPI app, deadline, one retry, and a fallback of its own.

A recommendation is idempotent, so a call that fails because its replica died is retried once (Serve
routes it to a live replica when there is one). Both attempts share one deadline,
``serving.recommender_timeout_ms`` (300 ms by default): past it, or with no replica to answer, the
ingress cancels the call and answers from the popular items it keeps (fetched from a live replica),
marked ``degraded``. A client gets an answer within the deadline, never a time-out, and a dead or
stalled replica holds a request (and the admission front's slot) no longer than that. Until the
ingress has those popular items (a fresh ingress, nothing to fall back on), it waits for a real answer
up to ``serving.request_timeout_s``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle

from serendipity.config import ServingConfig
from serving.api import build_api
from serving.guard import public_hosts, require_token_off_loopback
from serving.metrics import record_recommender_call
from serving.models import Overloaded, RecommendRequest
from serving.settings import SERVE_LOGGING, proxy_host

log = logging.getLogger("serendipity.serving")
REPLICA_LOST = (RayActorError, ReplicaUnavailableError, DeploymentUnavailableError)
ATTEMPTS = 3  # a retry can reach the killed replica again before the router hears of its death


def fallback_payload(popular: list[dict[str, Any]], request: RecommendRequest) -> dict[str, Any]:
    """The ingress's own answer: popular items the request did not name, degraded."""
    named = {request.context_item_id, *(request.history or [])}
    items = [item for item in popular if item["item_id"] not in named][: request.k]
    return {
        "items": items,
        "cluster": None,
        "reasoning": None,
        "source": "fallback",
        "degraded": True,
        "cold_start": False,
    }


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=32, logging_config=SERVE_LOGGING)
@serve.ingress()
class RecommendIngress:
    """HTTP ingress; its FastAPI app is built per replica (``__serve_build_asgi_app__``) from the serving
    limits and the token in this replica's environment (variable ``token_env``)."""

    def __init__(self, recommender: DeploymentHandle, serving: ServingConfig, token_env: str) -> None:
        self._recommender = recommender
        self._serving = serving
        self._token = os.environ.get(token_env) or None
        require_token_off_loopback(public_hosts(serving, proxy_host(serving.host)), self._token, token_env)
        self._popular: list[dict[str, Any]] = []
        self._popular_fetch: asyncio.Task | None = None

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_api(self, self._serving, self._token)

    async def _fetch_popular(self) -> None:
        try:
            call = self._recommender.popular_items.remote(self._serving.max_k)
            self._popular = await asyncio.wait_for(call, timeout=self._serving.request_timeout_s)
        except Exception:  # noqa: BLE001 - fetched again after the next answered request
            log.warning("could not fetch the popular items for the fallback", exc_info=True)

    def _keep_popular_fresh(self) -> None:
        if not self._popular and (self._popular_fetch is None or self._popular_fetch.done()):
            self._popular_fetch = asyncio.create_task(self._fetch_popular())

    async def recommend(self, request: RecommendRequest) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        # the tight deadline once there is a fallback worth answering; before the first answer (a fresh
        # ingress: no popular items yet) a real answer is worth waiting for, up to request_timeout_s
        timeout_s = self._serving.recommender_timeout_s if self._popular else self._serving.request_timeout_s
        started = loop.time()
        deadline = started + timeout_s
        body = request.model_dump()
        for attempt in range(1, ATTEMPTS + 1):
            response = self._recommender.recommend.remote(body)
            pending = asyncio.ensure_future(response)
            # asyncio.wait, not wait_for: past the deadline it answers at once, without waiting for the
            # cancelled call to wind down
            done, _ = await asyncio.wait({pending}, timeout=max(0.0, deadline - loop.time()))
            if not done:
                response.cancel()
                pending.cancel()
                log.warning("recommender past the %.0f ms deadline: fallback", timeout_s * 1000)
                break
            try:
                answer = pending.result()
            except BackPressureError as error:
                raise Overloaded from error
            except REPLICA_LOST:
                log.warning("recommender replica lost (attempt %d of %d)", attempt, ATTEMPTS, exc_info=True)
                if loop.time() >= deadline:
                    break
                continue
            record_recommender_call(loop.time() - started)
            self._keep_popular_fresh()
            return answer
        return fallback_payload(self._popular, request)

    async def readiness(self) -> dict[str, Any]:
        return await self._recommender.readiness.remote()

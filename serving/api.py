"""The HTTP API: request/response models and the FastAPI app built around a recommender backend.

The app is built per ingress replica (it needs the serving limits of the pipeline config and the
token from the replica's environment); the backend is the ingress deployment, which forwards to
the recommender deployment through a handle. No ``from __future__ import annotations`` here: FastAPI
must see the request model, built per app, as a real annotation.

No error text of a replica reaches a client: answers carry fixed messages and the request id
(also the ``X-Request-ID`` header), under which the details are logged.
"""

import asyncio
import logging
from typing import Any, Literal, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model

from serendipity.config import ServingConfig
from serving.guard import OVERLOADED, RequestGuard, request_id

log = logging.getLogger("serendipity.serving")

MAX_HISTORY = 1024
DEFAULT_K = 10
BACKSTOP_MARGIN_S = 2.0


class RecommendRequest(BaseModel):
    """What to recommend after ``context_item_id`` for ``user_id``; ``history`` adds items the user saw."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: int = Field(ge=0, le=2**63 - 1)
    context_item_id: int = Field(ge=0, le=2**63 - 1)
    k: int = Field(DEFAULT_K, ge=1)
    history: list[int] | None = Field(None, max_length=MAX_HISTORY)


class RecommendedItemOut(BaseModel):
    item_id: int
    score: float
    cluster_id: int


class ClusterOut(BaseModel):
    id: int
    description: str | None


class RecommendResponse(BaseModel):
    items: list[RecommendedItemOut]
    cluster: ClusterOut | None
    reasoning: str | None
    source: Literal["serendipity", "fallback", "neighbours"]
    degraded: bool
    cold_start: bool = False  # unknown user: the context item alone chose the cluster


class Overloaded(Exception):
    """The recommender turned the request away (its queue is full): answer 503 with Retry-After."""


class RecommenderBackend(Protocol):
    async def recommend(self, request: RecommendRequest) -> dict[str, Any]: ...

    async def readiness(self) -> dict[str, Any]: ...


def bounded_request_model(max_k: int) -> type[RecommendRequest]:
    """``RecommendRequest`` with ``k`` bounded by ``serving.max_k`` (so 422 and the OpenAPI schema say so)."""
    return create_model(
        "RecommendRequest",
        __base__=RecommendRequest,
        k=(int, Field(min(DEFAULT_K, max_k), ge=1, le=max_k, description=f"number of items, 1..{max_k}")),
    )


def build_api(backend: RecommenderBackend, serving: ServingConfig, token: str | None) -> FastAPI:
    """The FastAPI app (docs at /docs) behind the token and body-size guard."""
    api = FastAPI(
        title="serendipity",
        description="An MLLM picks the next cluster to explore, a sequence model the items inside it.",
        version="1",
    )
    request_model = bounded_request_model(serving.max_k)

    retry_after = {"Retry-After": str(serving.retry_after_s)}
    backstop_s = serving.request_timeout_s + BACKSTOP_MARGIN_S  # the backend answers by its deadline

    def failure(
        http: Request, status: int, detail: str, headers: dict[str, str] | None = None
    ) -> JSONResponse:
        return JSONResponse({"detail": detail, "request_id": request_id(http.scope)}, status, headers)

    async def recommend(request: request_model, http: Request) -> Any:  # type: ignore[valid-type]
        rid = request_id(http.scope)
        try:
            payload = await asyncio.wait_for(backend.recommend(request), timeout=backstop_s)
        except ValueError:
            log.warning("request %s: recommender rejected the request", rid, exc_info=True)
            return failure(http, 422, f"invalid request: k must be between 1 and {serving.max_k}")
        except (Overloaded, TimeoutError):
            log.warning("request %s: shed (recommender overloaded or past the deadline)", rid, exc_info=True)
            return failure(http, 503, OVERLOADED, retry_after)
        except Exception:  # noqa: BLE001 - logged with its traceback; the client gets a fixed message
            log.exception("request %s: recommend failed", rid)
            return failure(http, 500, "internal error")
        # the replica built the payload to RecommendResponse's schema: encoded once, not validated again
        return JSONResponse(payload)

    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    async def readyz(http: Request) -> JSONResponse:
        try:
            status = await asyncio.wait_for(backend.readiness(), timeout=serving.request_timeout_s)
        except Exception:  # noqa: BLE001 - any failure means "not ready", reported as 503
            log.warning("request %s: readiness check failed", request_id(http.scope), exc_info=True)
            return failure(http, 503, "recommender not reachable")
        return JSONResponse(status, 200 if status.get("ready") else 503)

    api.add_api_route(
        "/recommend",
        recommend,
        methods=["POST"],
        response_model=RecommendResponse,
        responses={503: {"description": "overloaded: retry after Retry-After seconds"}},
    )
    api.add_api_route("/healthz", healthz, methods=["GET"])
    api.add_api_route("/readyz", readyz, methods=["GET"])
    from serving.explorer import include_explorer_routes  # imports this module: not at its top

    include_explorer_routes(api, backend, serving=serving)
    api.add_middleware(
        RequestGuard,
        token=token,
        max_body_bytes=serving.max_body_bytes,
        max_in_flight=serving.max_in_flight,
        retry_after_s=serving.retry_after_s,
    )
    return api

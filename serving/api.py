"""The HTTP API: request/response models and the FastAPI app built around a recommender backend.

The app is built per ingress replica (it needs the serving limits of the pipeline config and the
token from the replica's environment); the backend is the ingress deployment, which forwards to
the recommender deployment through a handle. No ``from __future__ import annotations`` here: FastAPI
must see the request model, built per app, as a real annotation.
"""

import asyncio
import logging
from typing import Any, Literal, Protocol

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model

from serendipity.config import ServingConfig
from serving.guard import RequestGuard

log = logging.getLogger("serendipity.serving")

MAX_HISTORY = 1024
DEFAULT_K = 10


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

    async def recommend(request: request_model) -> RecommendResponse:  # type: ignore[valid-type]
        try:
            payload = await asyncio.wait_for(backend.recommend(request), timeout=serving.request_timeout_s)
        except ValueError as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
        except TimeoutError:
            log.warning("recommend timed out after %.1f s", serving.request_timeout_s)
            raise HTTPException(status_code=504, detail="recommender timed out") from None
        return RecommendResponse.model_validate(payload)

    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    async def readyz() -> JSONResponse:
        try:
            status = await asyncio.wait_for(backend.readiness(), timeout=serving.request_timeout_s)
        except Exception as error:  # noqa: BLE001 - any failure means "not ready", reported as 503
            log.warning("readiness check failed: %s", error)
            return JSONResponse({"ready": False, "detail": f"{type(error).__name__}: {error}"}, 503)
        return JSONResponse(status, 200 if status.get("ready") else 503)

    api.add_api_route("/recommend", recommend, methods=["POST"], response_model=RecommendResponse)
    api.add_api_route("/healthz", healthz, methods=["GET"])
    api.add_api_route("/readyz", readyz, methods=["GET"])
    api.add_middleware(RequestGuard, token=token, max_body_bytes=serving.max_body_bytes)
    return api

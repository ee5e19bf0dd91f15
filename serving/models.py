"""The HTTP contract shared by the API and the explorer: request and response models, the backend
protocol the ingress implements, and the overload signal. No ``from __future__ import annotations``:
FastAPI reads these models from route annotations."""

from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, create_model

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

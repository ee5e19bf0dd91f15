"""The HTTP API: the FastAPI app around a recommender backend (``build_api``) and its routes.

The app is built per ingress replica (it needs the serving limits of the pipeline config and the
token from the replica's environment); the backend is the ingress deployment, which forwards to
the recommender deployment through a handle. Routes are module functions on routers; what they need
(the backend, the serving limits) is the app's ``ApiContext``, a FastAPI dependency. No ``from
__future__ import annotations`` here: FastAPI reads the route annotations.

No error text of a replica reaches a client: answers carry fixed messages and the request id
(also the ``X-Request-ID`` header), under which the details are logged.
"""

import asyncio
import functools
import logging
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from serendipity.config import ServingConfig
from serving.explorer import SourceProvider, include_explorer, served_recommender_source
from serving.guard import OVERLOADED, RequestGuard, request_id
from serving.metrics import SHED_AT_INGRESS, SHED_AT_RECOMMENDER, record_answer, record_shed
from serving.models import (
    Overloaded,
    RecommenderBackend,
    RecommendRequest,
    RecommendResponse,
    bounded_request_model,
)
from serving.request_log import SERVED_BY, log_request

log = logging.getLogger("serendipity.serving")

BACKSTOP_MARGIN_S = 2.0


@dataclass(frozen=True)
class ApiContext:
    """What the API's routes depend on, kept on the app (``app.state.api``)."""

    backend: RecommenderBackend
    serving: ServingConfig


def api_context(http: Request) -> ApiContext:
    return http.app.state.api


Context = Annotated[ApiContext, Depends(api_context)]


def _failure(http: Request, status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "request_id": request_id(http.scope)}, status, headers)


async def recommend(request: RecommendRequest, http: Request, context: ApiContext) -> Any:
    """POST /recommend: the backend's answer by its deadline, else a fixed error with the request id."""
    serving, rid = context.serving, request_id(http.scope)
    backstop_s = serving.request_timeout_s + BACKSTOP_MARGIN_S  # the backend answers by its deadline
    started = time.perf_counter()
    try:
        payload = await asyncio.wait_for(context.backend.recommend(request), timeout=backstop_s)
    except ValueError:
        log.warning("request %s: recommender rejected the request", rid, exc_info=True)
        log_request(rid, request, 422, time.perf_counter() - started)
        return _failure(http, 422, f"invalid request: k must be between 1 and {serving.max_k}")
    except (Overloaded, TimeoutError):
        log.warning("request %s: shed (recommender overloaded or past the deadline)", rid, exc_info=True)
        record_shed(SHED_AT_RECOMMENDER)
        log_request(rid, request, 503, time.perf_counter() - started)
        return _failure(http, 503, OVERLOADED, {"Retry-After": str(serving.retry_after_s)})
    except Exception:  # noqa: BLE001 - logged with its traceback; the client gets a fixed message
        log.exception("request %s: recommend failed", rid)
        log_request(rid, request, 500, time.perf_counter() - started)
        return _failure(http, 500, "internal error")
    seconds = time.perf_counter() - started
    versions = payload.pop(SERVED_BY, None)
    record_answer(payload["source"], payload["degraded"], seconds)
    log_request(rid, request, 200, seconds, payload, versions)
    # the replica built the payload to RecommendResponse's schema: encoded once, not validated again
    return JSONResponse(payload)


def recommend_router(max_k: int) -> APIRouter:
    """``/recommend`` with its body bounded by ``max_k``. FastAPI reads the bound (for the 422s and the
    OpenAPI schema) from the endpoint's annotation, so the route is a thin endpoint annotated with this
    app's request model, calling ``recommend``."""
    request_model = bounded_request_model(max_k)
    router = APIRouter()

    @router.post(
        "/recommend",
        response_model=RecommendResponse,
        responses={503: {"description": "overloaded: retry after Retry-After seconds"}},
    )
    async def bounded_recommend(request: request_model, http: Request, context: Context) -> Any:  # type: ignore[valid-type]
        return await recommend(request, http, context)

    return router


probes = APIRouter()


@probes.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "alive"}


@probes.get("/favicon.ico", include_in_schema=False)
async def favicon() -> Response:
    """No icon, said without a token: browsers ask for one on any page (the 401 page too), and a 401 here
    would only add an error to their console."""
    return Response(status_code=204)


@probes.get("/readyz")
async def readyz(http: Request, context: Context) -> JSONResponse:
    try:
        status = await asyncio.wait_for(
            context.backend.readiness(), timeout=context.serving.request_timeout_s
        )
    except Exception:  # noqa: BLE001 - any failure means "not ready", reported as 503
        log.warning("request %s: readiness check failed", request_id(http.scope), exc_info=True)
        return _failure(http, 503, "recommender not reachable")
    return JSONResponse(status, 200 if status.get("ready") else 503)


def build_api(
    backend: RecommenderBackend,
    serving: ServingConfig,
    token: str | None,
    source: SourceProvider = served_recommender_source,
) -> FastAPI:
    """The FastAPI app (docs at /docs) behind the token and body-size guard; ``source`` tells the explorer
    what the recommender serves (default: asked of this application's recommender deployment)."""
    api = FastAPI(
        title="serendipity",
        description="An MLLM picks the next cluster to explore, a sequence model the items inside it.",
        version="1",
    )
    api.state.api = ApiContext(backend, serving)
    api.include_router(recommend_router(serving.max_k))
    api.include_router(probes)
    include_explorer(api, backend, source, serving)
    api.add_middleware(
        RequestGuard,
        token=token,
        max_body_bytes=serving.max_body_bytes,
        max_in_flight=serving.max_in_flight,
        retry_after_s=serving.retry_after_s,
        on_shed=functools.partial(record_shed, SHED_AT_INGRESS),
    )
    return api

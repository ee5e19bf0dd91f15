"""The serendipity explorer: ``GET /explore`` (a self-contained page) and the JSON and media routes it calls.

The routes (``router``; what they need, ``ExplorerContext``, is a FastAPI dependency) join the API's
app (``include_explorer``), so they sit behind the same guard (bearer token, body limit). What the page
shows is read, on the first explorer request, from the work directory of the pipeline config the
recommender deployment serves (``ExplorerState``); the slate is the ingress's own answer
(``backend.recommend``: deadline, retry, fallback, as /recommend gives it), the baseline the
exploitation arm on the same request. Media are addressed by item id only.

No explorer work runs on the ingress's event loop: searches, slates, media and the report run on
threads, at most ``EXPLORER_WORKERS`` at once per replica. Up to ``EXPLORER_QUEUE`` more wait their turn
(a page asks for its dozens of thumbnails at once); past that they are refused at once with 503 +
Retry-After, like overload on /recommend. Each is answered within ``serving.request_timeout_s``, its wait
included (past it 503; the thread keeps its slot until it ends, so the bound holds). Feature reads, the
baseline's included, go through the recommender's guarded path (deadline, bounded in flight, degraded
on failure).
No ``from __future__ import annotations``: FastAPI reads the route annotations.
"""

import asyncio
import html
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from serendipity.config import PipelineConfig, ServingConfig, load_config
from serving.models import RecommenderBackend, RecommendRequest
from serving.request_log import SERVED_BY
from serving.settings import RecommenderUserConfig

if TYPE_CHECKING:
    from serendipity.explorer.catalog import ExplorerCatalog
    from serendipity.explorer.rendered_media import ExplorerMedia
    from serendipity.retrieval.recommend import Recommender

log = logging.getLogger("serendipity.serving")

PAGE_DIR = Path(__file__).resolve().parent / "explorer_page"
ASSETS = {"explorer.js": "text/javascript", "explorer.css": "text/css"}
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
# the report: one self-contained file (inline style, data: images), no script, nothing fetched
REPORT_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
WORK_DIR_SHOWN = "(the pipeline's work dir)"
EXPLORER_WORKERS = 2  # explorer calls on threads at once, per ingress replica
EXPLORER_QUEUE = 64  # calls waiting for a thread, per replica; more get 503 at once
BUSY = "explorer busy, retry later"
ANONYMOUS_USER = 2**63 - 1  # no stored history: the context item alone decides (cold start)
SLATE_K = 10
NO_ICON = '<link rel="icon" href="data:,">'
CLUSTER_MEMBERS = 8
SEARCH_LIMIT = 30
ItemId = int  # path and query parameters are validated integers, never paths

SourceProvider = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class ExplorerState:
    config: PipelineConfig
    catalog: "ExplorerCatalog"
    media: "ExplorerMedia"  # files rendered offline, nothing decoded while serving
    recommender: "Recommender"  # for the exploitation baseline


def load_state(source: dict[str, Any]) -> ExplorerState:
    """Catalogue, media and a recommender for the baseline, from what the recommender deployment loaded."""
    from serendipity.explorer.catalog import ExplorerCatalog
    from serendipity.explorer.rendered_media import RenderedMedia, rendered_dir
    from serendipity.retrieval.recommend import Recommender

    loaded = RecommenderUserConfig.model_validate(source)
    assert loaded.config_path is not None
    config = load_config(loaded.config_path, overrides=dict(loaded.overrides))
    catalog = ExplorerCatalog.load(config)
    timeout_s = config.serving.feature_timeout_ms / 1000  # the serving path's deadline and bounds
    recommender = Recommender.load(
        config, loaded.feature_store_yaml, feature_timeout_s=timeout_s, cold_start=True
    )
    return ExplorerState(config, catalog, RenderedMedia(rendered_dir(config)), recommender)


async def served_recommender_source() -> dict[str, Any]:
    """The pipeline source of this application's recommender deployment (inside a Serve replica)."""
    from ray import serve

    app_name = serve.get_replica_context().app_name
    handle = serve.get_deployment_handle("RecommenderDeployment", app_name)
    return await handle.pipeline_source.remote()


class StateLoader:
    """Loads the explorer's state once, on first use, off the event loop; asking the recommender
    deployment what it serves has a deadline (``source_timeout_s``) like every call the ingress makes."""

    def __init__(self, source: SourceProvider, source_timeout_s: float | None = None) -> None:
        self._source = source
        self._source_timeout_s = source_timeout_s
        self._state: ExplorerState | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> ExplorerState:
        async with self._lock:
            if self._state is None:
                try:
                    source = await asyncio.wait_for(self._source(), timeout=self._source_timeout_s)
                except TimeoutError as error:
                    raise ExplorerBusy("the recommender did not say what it serves in time") from error
                self._state = await asyncio.to_thread(load_state, source)
        return self._state


def _tiles(state: ExplorerState, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Slate items with their titles, cluster descriptions and whether they have a thumbnail."""
    catalog = state.catalog
    return [
        {**catalog.item_summary(item["item_id"]), **item} if item["item_id"] in catalog else dict(item)
        for item in items
    ]


async def _served(backend: RecommenderBackend, request: RecommendRequest) -> dict[str, Any]:
    try:
        served = await backend.recommend(request)
        served.pop(SERVED_BY, None)  # the versions the request log reads, not the page
        return served
    except Exception:  # noqa: BLE001 - the page shows a fixed message; the details are logged
        log.warning("explorer: recommend failed", exc_info=True)
        return {"items": [], "cluster": None, "reasoning": None, "source": "error", "degraded": True}


async def explore_item(
    state: ExplorerState,
    backend: RecommenderBackend,
    item_id: int,
    user_id: int | None,
    k: int,
    work: "BoundedWork | None" = None,
) -> dict[str, Any]:
    """Everything the page shows for one request: the item, the model's answer, both slates, the cluster."""
    from serendipity.explorer.slates import exploitation_baseline

    catalog, k = state.catalog, max(1, min(k, state.config.serving.max_k))
    user = ANONYMOUS_USER if user_id is None else user_id
    request = RecommendRequest(user_id=user, context_item_id=item_id, k=k)
    served = await _served(backend, request)
    baseline_args = (exploitation_baseline, state.recommender, user, item_id, k)
    baseline = await (work.run(*baseline_args) if work else asyncio.to_thread(*baseline_args))
    answer = catalog.answer(item_id)
    nominated = (served.get("cluster") or {}).get("id") or (answer or {}).get("cluster_id")
    item = None
    if item_id in catalog:
        item = {**catalog.item_detail(item_id), "frame_count": state.media.frame_count(item_id)}
    shared = {i["item_id"] for i in served["items"]} & {i["item_id"] for i in baseline["items"]}
    return {
        "request": {"user_id": user_id, "context_item_id": item_id, "k": k},
        "item": item,
        "answer": answer,
        "served": {**served, "items": _tiles(state, served["items"])},
        "baseline": {**baseline, "items": _tiles(state, baseline["items"])},
        "cluster": None if nominated is None else catalog.cluster(int(nominated), CLUSTER_MEMBERS),
        "shared_items": sorted(shared),
    }


class ExplorerBusy(Exception):
    """Every explorer worker slot is taken, or the work ran past its deadline."""


class BoundedWork:
    """Runs blocking explorer work on threads: at most ``slots`` at once, at most ``queue`` more waiting
    (past that ``ExplorerBusy`` at once), each answered within ``timeout_s`` of its arrival, the wait
    included (past it ``ExplorerBusy``; a slot is freed only when its thread ends, so a stuck call can
    never let more than ``slots`` run)."""

    def __init__(self, slots: int, timeout_s: float, queue: int = 0) -> None:
        self.slots = slots
        self.queue = queue
        self.timeout_s = timeout_s
        self.running = 0  # one event loop: no lock needed
        self.waiting = 0
        self._free = asyncio.Semaphore(slots)

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        if self._free.locked() and self.waiting >= self.queue:
            raise ExplorerBusy(f"{self.running} explorer calls in progress, {self.waiting} waiting")
        deadline = time.monotonic() + self.timeout_s
        self.waiting += 1
        try:
            await asyncio.wait_for(self._free.acquire(), self.timeout_s)
        except TimeoutError:
            raise ExplorerBusy(f"no explorer thread free within {self.timeout_s} s") from None
        finally:
            self.waiting -= 1
        self.running += 1
        task = asyncio.ensure_future(asyncio.to_thread(function, *args))

        def release(_: asyncio.Future) -> None:
            self.running -= 1
            self._free.release()

        task.add_done_callback(release)
        done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - time.monotonic()))
        if not done:
            raise ExplorerBusy(f"explorer call past {self.timeout_s} s")
        return task.result()


def report_page(config: PipelineConfig) -> str | None:
    """The evaluation report as served: without the work dir's path (a server detail) and without an
    icon (else the browser asks for /favicon.ico, which this app has not); None when there is none."""
    from serendipity.layout import WorkLayout

    path = WorkLayout.of(config).report_html_path
    if not path.exists():
        return None
    text = path.read_text()
    work_dir = Path(config.work_dir)
    for shown in {str(work_dir), str(work_dir.resolve())}:
        text = text.replace(html.escape(shown), WORK_DIR_SHOWN).replace(shown, WORK_DIR_SHOWN)
    return text.replace("<head>", f"<head>{NO_ICON}", 1)


def _busy(retry_after_s: int) -> JSONResponse:
    return JSONResponse({"detail": BUSY}, 503, {"Retry-After": str(retry_after_s)})


def _jpeg(image: bytes | None) -> Response:
    if image is None:
        return JSONResponse({"detail": "no usable media for this item"}, 404)
    return Response(image, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@dataclass(frozen=True)
class ExplorerContext:
    """What the explorer's routes depend on, kept on the app (``app.state.explorer``)."""

    backend: RecommenderBackend
    loader: StateLoader
    work: BoundedWork
    retry_after_s: int


def explorer_context(http: Request) -> ExplorerContext:
    return http.app.state.explorer


Context = Annotated[ExplorerContext, Depends(explorer_context)]
router = APIRouter(prefix="/explore", include_in_schema=False)


@router.get("")
async def page() -> HTMLResponse:
    return HTMLResponse((PAGE_DIR / "index.html").read_text(), headers=PAGE_HEADERS)


@router.get("/static/{name}")
async def asset(name: str) -> Response:
    if name not in ASSETS:
        return JSONResponse({"detail": "not found"}, 404)
    return Response((PAGE_DIR / name).read_text(), media_type=ASSETS[name], headers=PAGE_HEADERS)


@router.get("/api/search")
async def search(
    context: Context, q: str = Query("", max_length=200), limit: int = Query(SEARCH_LIMIT, ge=1, le=100)
) -> Any:
    catalog = (await context.loader.get()).catalog
    return {"items": await context.work.run(catalog.search, q, limit)}


@router.get("/api/roots")
async def roots(context: Context) -> Any:
    return {"clusters": (await context.loader.get()).catalog.roots()}


@router.get("/api/cluster/{cluster_id}")
async def cluster(
    context: Context, cluster_id: int, members: int = Query(CLUSTER_MEMBERS, ge=0, le=100)
) -> Any:
    found = await context.work.run((await context.loader.get()).catalog.cluster, cluster_id, members)
    return found if found is not None else JSONResponse({"detail": "unknown cluster"}, 404)


@router.get("/api/item/{item_id}")
async def item(
    context: Context,
    item_id: ItemId,
    user_id: int | None = Query(None, ge=0, le=2**63 - 1),
    k: int = Query(SLATE_K, ge=1),
) -> Any:
    return await explore_item(await context.loader.get(), context.backend, item_id, user_id, k, context.work)


@router.get("/media/{item_id}/thumbnail.jpg")
async def thumbnail(context: Context, item_id: ItemId) -> Response:
    state = await context.loader.get()
    return _jpeg(await context.work.run(state.media.thumbnail, item_id))


@router.get("/media/{item_id}/frame/{index}.jpg")
async def frame(context: Context, item_id: ItemId, index: int) -> Response:
    state = await context.loader.get()
    return _jpeg(await context.work.run(state.media.frame, item_id, index))


@router.get("/report")
async def report(context: Context) -> HTMLResponse:
    config = (await context.loader.get()).config
    text = await context.work.run(report_page, config)
    if text is None:
        command = html.escape("serendipity report --config <pipeline.yaml>")
        message = f"<p>No report yet: write it with <code>{command}</code></p>"
        return HTMLResponse(message, 404, headers=REPORT_HEADERS)
    return HTMLResponse(text, headers=REPORT_HEADERS)


def include_explorer(
    api: FastAPI,
    backend: RecommenderBackend,
    source: SourceProvider = served_recommender_source,
    serving: ServingConfig | None = None,
) -> ExplorerContext:
    """Add the explorer's routes to ``api`` (under its guard), with their context; returns the context."""
    serving = serving or ServingConfig()
    context = ExplorerContext(
        backend,
        StateLoader(source, serving.request_timeout_s),
        BoundedWork(EXPLORER_WORKERS, serving.request_timeout_s, EXPLORER_QUEUE),
        serving.retry_after_s,
    )
    api.state.explorer = context

    async def busy(http: Request, error: Exception) -> JSONResponse:
        log.warning("explorer: %s", error)
        return _busy(http.app.state.explorer.retry_after_s)

    api.add_exception_handler(ExplorerBusy, busy)
    api.include_router(router)
    return context

"""The explorer's routes off the event loop and bounded, its search on any text, its report's headers:
the real FastAPI app over an in-memory catalogue, no Ray."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pandas as pd
import pytest

from serendipity.config import ServingConfig
from serendipity.explorer.catalog import ExplorerCatalog
from serving.api import build_api
from serving.explorer import EXPLORER_WORKERS, WORK_DIR_SHOWN, BoundedWork, ExplorerBusy, report_page


class NoTree:
    def __contains__(self, cluster_id: object) -> bool:
        return False


def catalog() -> ExplorerCatalog:
    items = pd.DataFrame({"item_id": [1, 2, 23], "title": ["a cat", "x² plot", "dog"], "c3": [7, 7, 8]})
    return ExplorerCatalog(items.set_index("item_id", drop=False), NoTree(), pd.DataFrame(), 3)


@pytest.mark.parametrize("query", ["²", "٣", "2" * 40, "x²", "23"])
def test_search_answers_any_text(query: str) -> None:
    found = [item["item_id"] for item in catalog().search(query, 10)]
    assert found == {"x²": [2], "²": [2], "23": [23]}.get(query, [])


def test_bounded_work_refuses_past_its_slots_and_keeps_a_stuck_slot() -> None:
    release = threading.Event()

    async def run() -> None:
        work = BoundedWork(slots=1, timeout_s=0.05)
        with pytest.raises(ExplorerBusy, match="past"):
            await work.run(release.wait, 30)  # stuck: answered busy at the deadline...
        with pytest.raises(ExplorerBusy, match="in progress"):
            await work.run(lambda: 1)  # ...and its thread still holds the slot
        release.set()
        while work.running:
            await asyncio.sleep(0.01)
        assert await work.run(lambda: 2) == 2

    asyncio.run(run())


def test_bounded_work_queues_past_its_slots_within_the_deadline() -> None:
    release = threading.Event()

    async def run() -> None:
        work = BoundedWork(slots=1, timeout_s=0.2, queue=1)
        stuck = asyncio.create_task(work.run(release.wait, 30))
        while not work.running:
            await asyncio.sleep(0.01)
        with pytest.raises(ExplorerBusy, match="no explorer thread free"):
            await work.run(lambda: 1)  # waited its turn, the deadline came first
        with pytest.raises(ExplorerBusy, match="past"):
            await stuck
        waiting = asyncio.create_task(work.run(lambda: 3))
        while not work.waiting:
            await asyncio.sleep(0.01)
        with pytest.raises(ExplorerBusy, match="1 waiting"):
            await work.run(lambda: 4)  # the queue is full: refused at once
        release.set()
        assert await waiting == 3  # the stuck thread ended in time: the waiting call ran

    asyncio.run(run())


class Backend:
    async def recommend(self, request: Any) -> dict[str, Any]:
        return {"items": [], "cluster": None, "reasoning": None, "source": "fallback", "degraded": True}

    async def readiness(self) -> dict[str, Any]:
        return {"ready": True}


def test_explorer_search_runs_off_the_event_loop_and_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow search blocks neither /healthz nor other requests; past EXPLORER_WORKERS at once calls wait
    their turn (and are answered), past EXPLORER_QUEUE waiting: 503 at once."""
    import serving.explorer as explorer

    gate = threading.Event()
    entered = threading.Semaphore(0)
    slow = catalog()
    original = ExplorerCatalog.search

    def slow_search(self: ExplorerCatalog, query: str, limit: int) -> list:
        entered.release()
        gate.wait(30)
        return original(self, query, limit)

    monkeypatch.setattr(ExplorerCatalog, "search", slow_search)
    monkeypatch.setattr(explorer, "EXPLORER_QUEUE", 2)
    state = SimpleNamespace(catalog=slow, config=None)

    async def loaded(self: Any) -> Any:
        return state

    monkeypatch.setattr(explorer.StateLoader, "get", loaded)
    api = build_api(Backend(), ServingConfig(max_in_flight=64, retry_after_s=2), token=None)

    async def run() -> tuple[list[int], int, list[int]]:
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
            search = "/explore/api/search?q=cat"
            held = [asyncio.create_task(client.get(search)) for _ in range(EXPLORER_WORKERS)]
            for _ in range(EXPLORER_WORKERS):
                await asyncio.to_thread(entered.acquire)
            health = (await client.get("/healthz")).status_code  # the loop is free
            held += [asyncio.create_task(client.get(search)) for _ in range(2)]
            while api.state.explorer.work.waiting < 2:
                await asyncio.sleep(0.01)
            refused = [(await client.get("/explore/api/search?q=dog")).status_code for _ in range(3)]
            gate.set()
            return [r.status_code for r in await asyncio.gather(*held)], health, refused

    held, health, refused = asyncio.run(run())
    assert held == [200] * (EXPLORER_WORKERS + 2) and health == 200 and refused == [503] * 3


def test_the_report_is_served_without_the_work_dir(tmp_path: Path) -> None:
    from serendipity.config import load_config
    from serendipity.layout import WorkLayout

    repo = Path(__file__).resolve().parents[2]
    config = load_config(repo / "configs" / "test.yaml", overrides={"work_dir": str(tmp_path / "work")})
    path = WorkLayout.of(config).report_html_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<html><head></head><body><p>work dir <code>{config.work_dir}</code></p></body></html>")
    text = report_page(config)
    assert text is not None and str(config.work_dir) not in text and WORK_DIR_SHOWN in text


def test_rendered_media_are_read_from_files_only(tmp_path: Path) -> None:
    from serendipity.explorer.rendered_media import RenderedMedia

    item = tmp_path / "7"
    item.mkdir()
    (item / "thumbnail.jpg").write_bytes(b"thumb")
    for index in range(2):
        (item / f"frame-{index}.jpg").write_bytes(f"frame {index}".encode())
    media = RenderedMedia(tmp_path)
    assert media.thumbnail(7) == b"thumb" and media.frame_count(7) == 2
    assert media.frame(7, 1) == b"frame 1" and media.frame(7, 2) is None and media.frame(7, -1) is None
    assert media.thumbnail(8) is None and media.frame_count(8) == 0

"""The request log's writer outside Serve (the file $SERENDIPITY_REQUEST_LOG names)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from serving import request_log
from serving.models import RecommendRequest


@pytest.fixture
def fresh_log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    path = tmp_path / "requests.jsonl"
    monkeypatch.setenv(request_log.PATH_ENV, str(path))
    monkeypatch.setattr(request_log, "_log", None)
    monkeypatch.setattr(request_log, "_opened", False)
    monkeypatch.setattr(request_log, "FLUSH_INTERVAL_S", 0.05)
    return path


def test_one_json_line_per_request_flushed_by_the_event_loop(fresh_log: Path) -> None:
    request = RecommendRequest(user_id=3, context_item_id=7, k=5)
    payload = {"source": "serendipity", "degraded": False, "cold_start": True}
    versions = request_log.served_by("m1", "r1")

    async def answer_two() -> list[str]:
        request_log.log_request("rid-1", request, 200, 0.0123, payload, versions)
        request_log.log_request("rid-2", request, 503, 0.5)
        buffered = fresh_log.read_text()
        await asyncio.sleep(0.2)
        return [buffered, fresh_log.read_text()]

    buffered, flushed = asyncio.run(answer_two())
    assert buffered == ""  # written off the request's path, not by it
    first, second = (json.loads(line) for line in flushed.splitlines())
    assert first["message"] == request_log.MESSAGE and first["request_id"] == "rid-1"
    assert (first["user_id"], first["context_item_id"], first["k"], first["status"]) == (3, 7, 5, 200)
    assert (first["source"], first["degraded"], first["cold_start"]) == ("serendipity", False, True)
    assert first["latency_ms"] == 12.3
    assert (first["model_version"], first["retriever_version"]) == ("m1", "r1")
    assert second["status"] == 503 and second["source"] is None and second["model_version"] is None
    assert second["ts"] >= first["ts"] > 0


def test_without_an_event_loop_the_line_is_flushed_at_once(fresh_log: Path) -> None:
    request_log.log_request("rid-3", RecommendRequest(user_id=1, context_item_id=2, k=1), 422, 0.001)
    assert json.loads(fresh_log.read_text())["status"] == 422


def test_outside_serve_and_without_a_path_nothing_is_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(request_log.PATH_ENV, raising=False)
    monkeypatch.setattr(request_log, "_log", None)
    monkeypatch.setattr(request_log, "_opened", False)
    request_log.log_request("rid-4", RecommendRequest(user_id=1, context_item_id=2, k=1), 200, 0.001)
    assert request_log.request_log() is None

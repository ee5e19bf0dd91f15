"""One structured JSON line per /recommend, written by the replica that answered it over HTTP.

In a Serve replica the lines go to ``requests_<app>_<deployment>_<replica>.jsonl`` in the Ray session's
``logs/serve/`` folder, beside Serve's own replica logs (``ray logs`` and log shippers that collect that
folder find them); outside Serve (the ASGI floor of ``bench/``) to the file ``$SERENDIPITY_REQUEST_LOG``
names, else nowhere. A line is one JSON object: ``message`` ("recommend"), ``ts`` (Unix seconds),
``app``, ``deployment``, ``replica``, ``request_id`` (the ``X-Request-ID`` the admission front and the
client see), ``user_id``, ``context_item_id``, ``k``, ``status``, ``source``, ``degraded``,
``cold_start``, ``latency_ms``, ``model_version`` and ``retriever_version``.

The line is encoded once and buffered: the file is flushed at most ``FLUSH_INTERVAL_S`` after a line is
written (by the event loop, off the request's path) and on exit. Serve's own logger would format each
line twice (its rotating handler sizes every record by formatting it) and, with Serve's buffered request
logs, format a thousand at once in one stall of the event loop (bench/results/serve_profile/summary.md).

The recommender names the versions it answered with in ``SERVED_BY`` of its payload; the ingress takes
that key out before the payload reaches the client.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import time
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("serendipity.serving")

SERVED_BY = "_served_by"  # payload key: {"model_version": ..., "retriever_version": ...}
MESSAGE = "recommend"
PATH_ENV = "SERENDIPITY_REQUEST_LOG"
FLUSH_INTERVAL_S = 1.0
_NO_VERSIONS: dict[str, Any] = {"model_version": None, "retriever_version": None}


def served_by(model_version: str | None, retriever_version: str | None) -> dict[str, str | None]:
    """What a recommender puts under ``SERVED_BY`` (built once per loaded model, shared by its answers)."""
    return {"model_version": model_version, "retriever_version": retriever_version}


class RequestLog:
    """Buffered JSON lines to one file; ``write`` is called from the event loop's thread."""

    def __init__(self, path: Path, origin: dict[str, str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._origin = origin  # app, deployment, replica: the same on every line
        self._file: IO[str] = path.open("a", buffering=1 << 16, encoding="utf-8")
        self._flush_due = False
        atexit.register(self.flush)

    def write(self, fields: dict[str, Any]) -> None:
        line = {"message": MESSAGE, "ts": round(time.time(), 3), **self._origin, **fields}
        self._file.write(json.dumps(line, separators=(",", ":"), default=str) + "\n")
        if not self._flush_due:
            self._flush_due = True
            try:
                asyncio.get_running_loop().call_later(FLUSH_INTERVAL_S, self.flush)
            except RuntimeError:  # no event loop here: flush at once
                self.flush()

    def flush(self) -> None:
        self._flush_due = False
        if not self._file.closed:
            self._file.flush()


def _open() -> RequestLog | None:
    """This process's request log: in a Serve replica its file beside Serve's logs, else the file
    ``$SERENDIPITY_REQUEST_LOG`` names, else None."""
    from ray import serve

    try:
        context = serve.get_replica_context()
    except Exception:  # noqa: BLE001 - not in a replica (RayServeException), or no Ray at all
        context = None
    if context is not None:
        from ray.serve._private.logging_utils import get_serve_logs_dir

        replica = context.replica_id
        origin = {"app": context.app_name, "deployment": context.deployment, "replica": replica.unique_id}
        name = f"requests_{context.app_name}_{context.deployment}_{replica.unique_id}.jsonl"
        return RequestLog(Path(get_serve_logs_dir()) / name, origin)
    path = os.environ.get(PATH_ENV)
    if not path:
        return None
    return RequestLog(Path(path), {"app": "-", "deployment": "-", "replica": str(os.getpid())})


_log: RequestLog | None = None
_opened = False


def request_log() -> RequestLog | None:
    global _log, _opened
    if not _opened:
        _opened = True
        try:
            _log = _open()
        except OSError:
            log.warning("request log not opened: no request lines from this process", exc_info=True)
    return _log


def log_request(
    rid: str,
    request: Any,
    status: int,
    seconds: float,
    payload: dict[str, Any] | None = None,
    versions: dict[str, Any] | None = None,
) -> None:
    """The line of one /recommend: ``request`` a ``RecommendRequest``, ``payload`` the answer (None
    for an error), ``versions`` what the recommender put under ``SERVED_BY``."""
    target = request_log()
    if target is None:
        return
    answered = payload is not None
    target.write(
        {
            "request_id": rid,
            "user_id": request.user_id,
            "context_item_id": request.context_item_id,
            "k": request.k,
            "status": status,
            "source": payload["source"] if answered else None,
            "degraded": payload["degraded"] if answered else None,
            "cold_start": payload.get("cold_start") if answered else None,
            "latency_ms": round(seconds * 1000, 3),
            **(versions or _NO_VERSIONS),
        }
    )

"""One structured log line per /recommend at the ingress, through Serve's own logger (``ray.serve``).

The line goes where Serve writes the replica's logs and as Serve's ``logging_config`` says (JSON in
serving/config.yaml and on the ingress deployment): one JSON object whose fields are Serve's (replica,
route, ``request_id``) and this module's: ``request_id`` (the ``X-Request-ID`` the admission front and
the client see), ``user_id``, ``context_item_id``, ``k``, ``status``, ``source``, ``degraded``,
``cold_start``, ``latency_ms``, ``model_version`` and ``retriever_version``.

The recommender names the versions it answered with in ``SERVED_BY`` of its payload; the ingress takes
that key out before the payload reaches the client.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("ray.serve")  # Serve's logger: the replica's log file, Serve's logging_config

SERVED_BY = "_served_by"  # payload key: {"model_version": ..., "retriever_version": ...}
MESSAGE = "recommend"
_NO_VERSIONS: dict[str, Any] = {"model_version": None, "retriever_version": None}


def served_by(model_version: str | None, retriever_version: str | None) -> dict[str, str | None]:
    """What a recommender puts under ``SERVED_BY`` (built once per loaded model, shared by its answers)."""
    return {"model_version": model_version, "retriever_version": retriever_version}


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
    if not log.isEnabledFor(logging.INFO):
        return
    answered = payload is not None
    fields = {
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
    log.info(MESSAGE, extra=fields)

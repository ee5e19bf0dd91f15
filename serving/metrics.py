"""Application metrics, exported the way Ray exports its own: ``ray.util.metrics`` objects, created once per
process, that Ray's metrics agent serves on each node's metrics export port next to Serve's metrics.

Ray prefixes every name with ``ray_`` and counters end in ``_total``: ``serendipity_answers`` is scraped
as ``ray_serendipity_answers_total``. What each metric means, the alerts on them and the dashboard:
docs/operating.md (rules and dashboard in infra/monitoring/).

Recording is cheap: the tag dicts are built once per label value and reused, nothing blocks, and outside
a Ray process (unit tests, a plain script) every ``record_*`` does nothing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

# Seconds: request and recommender latencies around the 300 ms deadline, feature reads around 250 ms.
LATENCY_BOUNDARIES = [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0]
FEATURE_READ_BOUNDARIES = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]

ANSWERS = "serendipity_answers"
SHED = "serendipity_requests_shed"
REQUEST_SECONDS = "serendipity_request_seconds"
RECOMMENDER_CALL_SECONDS = "serendipity_recommender_call_seconds"
FEATURE_READ_SECONDS = "serendipity_feature_read_seconds"
FEATURE_READS = "serendipity_feature_reads"
SERVED_VERSION = "serendipity_served_version_info"
STORE_AGE = "serendipity_online_store_age_seconds"
STORE_EMPTY = "serendipity_online_store_empty"
GATE_DECISIONS = "serendipity_gate_decisions"
BATCH_ITEMS = "serendipity_batch_inference_items"
BATCH_ERRORS = "serendipity_batch_inference_errors"
BATCH_RATE = "serendipity_batch_inference_items_per_second"

# where a request was shed: the ingress's in-flight limit (RequestGuard, before the body is read) or
# Serve's back-pressure on the recommender (the ingress answers 503); HAProxy counts the front's own
SHED_AT_INGRESS = "ingress"
SHED_AT_RECOMMENDER = "recommender"
# feature reads: answered, past the deadline, refused (every read slot held), failed, no store open
READ_OUTCOMES = ("ok", "timeout", "saturated", "error", "closed")
NOT_PUBLISHED = "none"


@dataclass(frozen=True)
class _Metrics:
    answers: Any
    shed: Any
    request_seconds: Any
    recommender_call_seconds: Any
    feature_read_seconds: Any
    feature_reads: Any
    served_version: Any
    store_age: Any
    store_empty: Any
    gate_decisions: Any
    batch_items: Any
    batch_errors: Any
    batch_rate: Any


@functools.cache
def _created() -> _Metrics:
    from ray.util.metrics import Counter, Gauge, Histogram

    return _Metrics(
        answers=Counter(ANSWERS, "answers to /recommend by source and degraded", ("source", "degraded")),
        shed=Counter(SHED, "requests refused with 503 inside Serve, by where", ("at",)),
        request_seconds=Histogram(
            REQUEST_SECONDS, "time to answer /recommend at the ingress", LATENCY_BOUNDARIES
        ),
        recommender_call_seconds=Histogram(
            RECOMMENDER_CALL_SECONDS,
            "the ingress's call to the recommender deployment (answered calls)",
            LATENCY_BOUNDARIES,
        ),
        feature_read_seconds=Histogram(
            FEATURE_READ_SECONDS, "one online-store read of a batch's features", FEATURE_READ_BOUNDARIES
        ),
        feature_reads=Counter(FEATURE_READS, "online-store reads by outcome", ("outcome",)),
        served_version=Gauge(
            SERVED_VERSION,
            "1 for the model and retriever version a recommender replica serves",
            ("model_version", "retriever_version"),
        ),
        store_age=Gauge(STORE_AGE, "seconds since the online store's last materialisation"),
        store_empty=Gauge(STORE_EMPTY, "1 while the online store holds no serving features"),
        gate_decisions=Counter(GATE_DECISIONS, "publish-gate decisions of fine-tuning runs", ("decision",)),
        batch_items=Counter(BATCH_ITEMS, "corpus items batch inference predicted"),
        batch_errors=Counter(BATCH_ERRORS, "corpus items batch inference failed on"),
        batch_rate=Gauge(BATCH_RATE, "items per second of the last batch inference run"),
    )


_live: _Metrics | None = None


def _metrics() -> _Metrics | None:
    """The process's metrics, created on first use inside Ray; None outside it (records are dropped)."""
    global _live
    if _live is None:
        import ray

        if ray.is_initialized():
            _live = _created()
    return _live


@functools.cache
def _tags(key: str, value: str) -> dict[str, str]:
    return {key: value}


@functools.cache
def _answer_tags(source: str, degraded: bool) -> dict[str, str]:
    return {"source": source, "degraded": "true" if degraded else "false"}


def record_answer(source: str, degraded: bool, seconds: float) -> None:
    """An answer of /recommend (the recommender's or the ingress's own fallback) and its latency."""
    metrics = _metrics()
    if metrics is not None:
        metrics.answers.inc(1, _answer_tags(source, degraded))
        metrics.request_seconds.observe(seconds)


def record_shed(at: str) -> None:
    """A request refused with 503 inside Serve, at ``SHED_AT_INGRESS`` or ``SHED_AT_RECOMMENDER``."""
    metrics = _metrics()
    if metrics is not None:
        metrics.shed.inc(1, _tags("at", at))


def record_recommender_call(seconds: float) -> None:
    metrics = _metrics()
    if metrics is not None:
        metrics.recommender_call_seconds.observe(seconds)


def record_feature_read(seconds: float | None, outcome: str) -> None:
    """One online-store read (``READ_OUTCOMES``); ``seconds`` None when no read was made."""
    metrics = _metrics()
    if metrics is not None:
        metrics.feature_reads.inc(1, _tags("outcome", outcome))
        if seconds is not None:
            metrics.feature_read_seconds.observe(seconds)


_served: dict[str, str] = {}


def record_served_versions(model_version: str | None, retriever_version: str | None) -> None:
    """The versions this replica now serves (1) and, after a swap, the ones it stopped serving (0)."""
    metrics = _metrics()
    if metrics is None:
        return
    tags = {"model_version": model_version or NOT_PUBLISHED, "retriever_version": retriever_version or "-"}
    if _served and _served != tags:
        metrics.served_version.set(0, dict(_served))
    metrics.served_version.set(1, tags)
    _served.clear()
    _served.update(tags)


def record_store_state(age_s: float | None, empty: bool) -> None:
    """The online store as a recommender replica's store check saw it: seconds since its last
    materialisation (None: unknown, left as it was) and whether it holds no serving features."""
    metrics = _metrics()
    if metrics is None:
        return
    if age_s is not None:
        metrics.store_age.set(max(0.0, age_s))
    metrics.store_empty.set(1 if empty else 0)


def record_gate_decision(decision: str) -> None:
    metrics = _metrics()
    if metrics is not None:
        metrics.gate_decisions.inc(1, _tags("decision", decision))


def record_batch_inference(items: int, errors: int, seconds: float) -> None:
    """One batch-inference run: items predicted, items failed, and its throughput (both over the run)."""
    metrics = _metrics()
    if metrics is None:
        return
    if items > 0:
        metrics.batch_items.inc(items)
    if errors > 0:
        metrics.batch_errors.inc(errors)
    if seconds > 0:
        metrics.batch_rate.set((items + errors) / seconds)

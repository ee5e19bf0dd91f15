"""Bounded waits and rate-limited warnings for the degraded modes of online recommendation."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime
from typing import Any, Protocol, TypeVar

Result = TypeVar("Result")
READ_THREADS = 4


class ReadsSaturated(TimeoutError):
    """Every read slot is held by a read still running: the call is refused at once, never queued."""


class DeadlineReads:
    """Runs calls on worker threads of its own, at most ``max_in_flight`` at once, and waits at most
    ``timeout_s`` for each (None: no bound, run in the caller).

    A call past its deadline raises ``TimeoutError`` in the caller and is cancelled; one already running
    goes on on its thread (the store client's socket timeout ends it) and holds its slot until then.
    With every slot held, a new call raises ``ReadsSaturated`` at once: nothing waits in a queue to
    hit the store later as a burst, and a stalled store costs each caller at most ``timeout_s``.
    """

    def __init__(self, timeout_s: float | None, max_in_flight: int = READ_THREADS) -> None:
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._threads = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="deadline-read")

    def call(self, function: Callable[..., Result], *args: Any, **kwargs: Any) -> Result:
        if self.timeout_s is None:
            return function(*args, **kwargs)
        if not self._slots.acquire(blocking=False):
            raise ReadsSaturated(f"{self.max_in_flight} reads still in flight")
        try:
            future = self._threads.submit(function, *args, **kwargs)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())  # run, failed or cancelled
        try:
            return future.result(timeout=self.timeout_s)
        except FutureTimeout:
            future.cancel()
            raise


class RateLimitedWarning:
    """A logger's warnings at most once per ``interval_s``; the next one says how many were held back."""

    def __init__(self, logger: logging.Logger, interval_s: float) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._last = -math.inf
        self._held_back = 0

    def __call__(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last < self.interval_s:
            self._held_back += 1
            return
        held_back, self._held_back, self._last = self._held_back, 0, now
        suffix = f" ({held_back} more like it since the last warning)" if held_back else ""
        self.logger.warning(message + suffix, *args)


class FeatureReader(Protocol):
    """What the recommender needs of the feature store (``serendipity.feature_store.ServingFeatures``)."""

    def online_columns(
        self, item_ids: Sequence[int], user_ids: Sequence[int], now: datetime | None = None
    ) -> dict[str, list]: ...


class GuardedFeatureReads:
    """Feature reads that never fail nor hang the caller: any failure, a read past ``timeout_s`` or a
    store known to hold no serving features gives degraded answers and a rate-limited warning."""

    def __init__(self, timeout_s: float | None, warn: RateLimitedWarning) -> None:
        self.deadline = DeadlineReads(timeout_s)
        self.warn = warn
        # told (seconds of the read or None when none was made, outcome) after each read: a metric
        self.observe: Callable[[float | None, str], None] | None = None

    def _observed(self, started: float | None, outcome: str) -> None:
        if self.observe is not None:
            self.observe(None if started is None else time.perf_counter() - started, outcome)

    def rows(
        self,
        features: FeatureReader | None,
        user_ids: Sequence[int],
        item_ids: Sequence[int],
        now: datetime | None,
        store_holds_features: bool,
    ) -> tuple[list[dict[str, Any]], bool]:
        """(feature values per request, degraded) from ONE store read."""
        if features is None:
            self._observed(None, "closed")
            self.warn("feature store not open: serving degraded answers")
            return [{} for _ in user_ids], True
        started = time.perf_counter()
        try:
            columns = self.deadline.call(features.online_columns, list(item_ids), list(user_ids), now=now)
        except ReadsSaturated:
            self._observed(None, "saturated")
            self.warn("feature reads still in flight fill every slot: serving degraded answers")
            return [{} for _ in user_ids], True
        except TimeoutError:
            self._observed(started, "timeout")
            self.warn(
                "feature read took over %.0f ms: serving degraded answers", self.deadline.timeout_s * 1e3
            )
            return [{} for _ in user_ids], True
        except Exception as error:  # noqa: BLE001 - any store failure degrades, never fails the request
            self._observed(started, "error")
            self.warn("feature read failed, serving degraded answers: %s: %s", type(error).__name__, error)
            return [{} for _ in user_ids], True
        self._observed(started, "ok")
        if not store_holds_features:
            self.warn("online store holds no serving features: serving degraded answers")
        names = list(columns)  # plain lists, no DataFrame: this is every request's path
        rows = [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]
        return rows, not store_holds_features

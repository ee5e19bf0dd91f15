"""Bounded waits and rate-limited warnings for the degraded modes of online recommendation."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Protocol, TypeVar

Result = TypeVar("Result")
READ_THREADS = 4


class DeadlineReads:
    """Runs calls on worker threads of its own and waits at most ``timeout_s`` (None: no bound).

    A call past its deadline raises ``TimeoutError`` in the caller while it goes on, or hangs, on its
    thread; with every thread taken by hung calls, new calls queue and time out the same way.
    """

    def __init__(self, timeout_s: float | None) -> None:
        self.timeout_s = timeout_s
        self._threads = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="deadline-read")

    def call(self, function: Callable[..., Result], *args: Any, **kwargs: Any) -> Result:
        if self.timeout_s is None:
            return function(*args, **kwargs)
        return self._threads.submit(function, *args, **kwargs).result(timeout=self.timeout_s)


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
            self.warn("feature store not open: serving degraded answers")
            return [{} for _ in user_ids], True
        try:
            columns = self.deadline.call(features.online_columns, list(item_ids), list(user_ids), now=now)
        except TimeoutError:
            self.warn(
                "feature read took over %.0f ms: serving degraded answers", self.deadline.timeout_s * 1e3
            )
            return [{} for _ in user_ids], True
        except Exception as error:  # noqa: BLE001 - any store failure degrades, never fails the request
            self.warn("feature read failed, serving degraded answers: %s: %s", type(error).__name__, error)
            return [{} for _ in user_ids], True
        if not store_holds_features:
            self.warn("online store holds no serving features: serving degraded answers")
        names = list(columns)  # plain lists, no DataFrame: this is every request's path
        rows = [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]
        return rows, not store_holds_features

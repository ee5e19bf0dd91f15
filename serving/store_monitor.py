"""The recommender replica's watch on its online store, on a daemon thread.

Every ``serving.store_check_interval_s`` it re-opens a store that would not open (a store down at
start-up comes back without a restart) and checks, under ``serving.feature_timeout_ms``, that the
store holds the serving features (the sentinel rows written at materialisation). A store that hangs,
fails or lost its data marks the recommender's answers degraded and the replica not ready.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from serendipity.retrieval.deadline import DeadlineReads

log = logging.getLogger("serendipity.serving")


def open_store(config: Any, feature_store_yaml: str | None) -> Any:
    from serendipity.feature_store import ServingFeatures

    return ServingFeatures(config, feature_store_yaml)


def check_store(loaded: Any, probe: DeadlineReads) -> bool:
    """Re-open the store of ``loaded`` (a ``LoadedRecommender``) if needed; whether it holds the features
    (asked through ``probe``, under its deadline)."""
    recommender = loaded.recommender
    if recommender.features is None:
        try:
            recommender.features = open_store(loaded.config, loaded.source.feature_store_yaml)
            log.info("feature store opened")
        except Exception as error:  # noqa: BLE001 - retried at the next check
            log.debug("feature store still not opening: %s: %s", type(error).__name__, error)
            recommender.store_holds_features = False
            return False
    try:
        holds = bool(probe.call(recommender.features.holds_serving_features))
    except Exception as error:  # noqa: BLE001 - a store that fails or hangs holds nothing usable
        log.debug("feature store check failed: %s: %s", type(error).__name__, error)
        holds = False
    if holds != recommender.store_holds_features:
        log.warning("online store %s", "holds the serving features" if holds else "lost the serving features")
    recommender.store_holds_features = holds
    return holds


class StoreMonitor:
    """Runs ``check_store`` on what ``current`` returns, every ``interval_s``, until ``stop``."""

    def __init__(self, current: Callable[[], Any], interval_s: float, timeout_s: float) -> None:
        self._current = current
        self._interval_s = interval_s
        self._probe = DeadlineReads(timeout_s)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-monitor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            try:
                self.check(self._current())
            except Exception:  # noqa: BLE001 - the watch must outlive any single failure
                log.exception("store check raised")

    def check(self, loaded: Any) -> bool:
        return check_store(loaded, self._probe)

    def stop(self) -> None:
        self._stopped.set()

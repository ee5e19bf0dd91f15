"""The recommender replica's watch on its online store, on a daemon thread.

Every ``serving.store_check_interval_s`` it re-opens a store that would not open (a store down at
start-up comes back without a restart) and checks, under ``serving.feature_timeout_ms``, that the
store holds the serving features, from what Feast keeps (``ServingFeatures.registry_state``: so
``feast materialize-incremental`` alone makes a store servable). A store that hangs, fails, lost its
data or loaded none of it (data older than a TTL) marks the answers degraded and the replica not ready.
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


def _record(age_s: float | None, empty: bool) -> None:
    from serving.metrics import record_store_state

    record_store_state(age_s, empty)


def check_store(loaded: Any, probe: DeadlineReads) -> bool:
    """Re-open the store of ``loaded`` (a ``LoadedRecommender``) if needed; whether it holds the features.

    What it holds comes from Feast's registry (which views were materialised, up to when) and one online
    read, under ``probe``'s deadline, of each view's newest materialised source row; the outcome, with
    the reasons when not ready, is left in ``recommender.store_report`` for /readyz."""
    recommender = loaded.recommender
    if recommender.features is None:
        try:
            recommender.features = open_store(loaded.config, loaded.source.feature_store_yaml)
            log.info("feature store opened")
        except Exception as error:  # noqa: BLE001 - retried at the next check
            log.debug("feature store still not opening: %s: %s", type(error).__name__, error)
            recommender.store_holds_features = False
            recommender.store_report = {"problems": [f"store will not open: {type(error).__name__}: {error}"]}
            _record(None, True)
            return False
    features = recommender.features
    try:
        state = probe.call(features.check_online, features.registry_state())
        holds, report, age_s = state.holds, state.report(), state.age_s
    except Exception as error:  # noqa: BLE001 - a store that fails or hangs holds nothing usable
        log.debug("feature store check failed: %s: %s", type(error).__name__, error)
        holds, age_s = False, None
        report = {"problems": [f"store check failed: {type(error).__name__}: {error}"]}
    if holds != recommender.store_holds_features:
        reasons = "; ".join(report.get("problems", []))
        log.warning("online store %s", "holds the serving features" if holds else f"not servable: {reasons}")
    recommender.store_holds_features = holds
    recommender.store_report = report
    _record(age_s, not holds)
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

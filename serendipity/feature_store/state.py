"""What the online store holds, read from what Feast itself keeps: no rows of our own in the store.

Per feature view of the serving service, the registry records the intervals materialised (by the
library or by ``feast materialize-incremental``). The newest source row inside them must then be in the
online store: one online read of those rows tells a loaded store from an emptied one (a Redis FLUSHALL,
an emptied SQLite table, a fresh store behind an old registry). A view whose newest source row predates
its first materialised interval loaded nothing: its data ended longer than its TTL before the window
Feast chose (``now - ttl`` for a first ``feast materialize-incremental``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pyarrow.compute as pc
import pyarrow.dataset as ds

if TYPE_CHECKING:
    from feast import FeatureView


def utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class SourceProbe:
    """The newest source row of a view up to a time: its event time and entity key (None: no such row)."""

    until: datetime
    last_event: datetime | None
    key: dict[str, int] | None


def newest_row(view: FeatureView, until: datetime) -> SourceProbe:
    """The source's newest row with event time <= ``until`` (one scan of the key and time columns)."""
    source = view.batch_source
    stamp = source.timestamp_field
    keys = list(view.join_keys)
    dataset = ds.dataset(str(source.path), format="parquet")
    table = dataset.to_table(columns=[*keys, stamp], filter=ds.field(stamp) <= utc(until))
    if table.num_rows == 0:
        return SourceProbe(until, None, None)
    row = int(pc.index(table[stamp], pc.max(table[stamp])).as_py())
    last_event = utc(table[stamp][row].as_py())
    return SourceProbe(until, last_event, {key: int(table[key][row].as_py()) for key in keys})


@dataclass(frozen=True)
class ViewState:
    name: str
    ttl: timedelta | None
    materialized_until: datetime | None  # the registry's most recent materialisation end
    loaded_from: datetime | None  # the start of the earliest materialised interval
    probe: SourceProbe | None  # None: never materialised, or a source this process cannot read
    found: bool | None = None  # the probe row is in the online store (None: not asked)

    @property
    def loaded_nothing(self) -> bool:
        """The newest source row predates the materialised window: the view loaded none of its source."""
        probe, start = self.probe, self.loaded_from
        return bool(probe and start and (probe.last_event is None or probe.last_event < start))

    def problem(self) -> str | None:
        if self.materialized_until is None:
            return f"{self.name}: never materialised "
        if self.loaded_nothing:
            assert self.probe is not None and self.loaded_from is not None
            newest = self.probe.last_event.isoformat() if self.probe.last_event else "none"
            return (
                f"{self.name}: loaded nothing: the source's newest event ({newest}) is older than the "
                f"materialised window, which starts at {self.loaded_from.isoformat()} (ttl {self.ttl}); "
                "Feast starts a first `materialize-incremental` at now - ttl. Run `serendipity features "
                "materialize` (it starts at the data's last event - ttl) or raise the view's ttl"
            )
        if self.found is False:
            return f"{self.name}: the online store lacks the materialised rows (emptied?); materialise again"
        return None


@dataclass(frozen=True)
class StoreState:
    """The serving views' state at ``checked_at``; ``holds`` is what readiness asks."""

    checked_at: datetime
    views: list[ViewState] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [problem for view in self.views if (problem := view.problem()) is not None]

    @property
    def holds(self) -> bool:
        return bool(self.views) and not self.problems

    @property
    def emptied(self) -> bool:
        """Feast's registry says loaded, the online store has none of it: the store lost its data."""
        return any(view.found is False for view in self.views)

    @property
    def age_s(self) -> float | None:
        """Seconds since the oldest of the views' last materialisation end (None: one never materialised)."""
        ends = [view.materialized_until for view in self.views]
        if not ends or any(end is None for end in ends):
            return None
        return (self.checked_at - min(end for end in ends if end is not None)).total_seconds()

    def data_clocks(self) -> dict[str, datetime]:
        """Per view, the newest event loaded: the data's "now" that online TTLs count from."""
        return {
            view.name: view.probe.last_event
            for view in self.views
            if view.probe is not None and view.probe.last_event is not None and not view.loaded_nothing
        }

    def report(self) -> dict[str, object]:
        """For /readyz: what the store holds and, when not ready, why."""
        return {
            "holds_serving_features": self.holds,
            "emptied": self.emptied,
            "age_s": None if self.age_s is None else round(self.age_s, 1),
            "materialized_until": {
                view.name: view.materialized_until.isoformat() if view.materialized_until else None
                for view in self.views
            },
            "data_last_event": {name: clock.isoformat() for name, clock in self.data_clocks().items()},
            "problems": self.problems,
        }


def stale_views(
    views: list[FeatureView], last_events: dict[str, datetime | None], now: datetime
) -> list[str]:
    """Warnings for views whose source's newest event is older than ``now - ttl``: a first
    ``feast materialize-incremental`` (which starts at now - ttl) would load none of their rows."""
    warnings = []
    for view in views:
        last = last_events.get(view.name)
        if view.ttl and last is not None and last < utc(now) - view.ttl:
            warnings.append(
                f"feature view {view.name!r}: its source's newest event ({last.isoformat()}) is "
                f"{(utc(now) - last).days} days old, beyond its ttl of {view.ttl.days} days: Feast's own "
                "`materialize-incremental` starts at now - ttl and loads none of it (the store is then not "
                "servable: /readyz says why). `serendipity features materialize` starts at the data's last "
                "event - ttl, and online TTLs count from the data's last event"
            )
    return warnings

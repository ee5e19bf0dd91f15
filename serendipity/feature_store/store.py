"""The Feast feature store of a pipeline: apply, materialise, and read through the serving FeatureService.

The store is configured by a feature_store.yaml: the Feast repository's embedded default
(``features.repo_dir``, relative to the project root) or an alternative one (``features.feature_store_yaml``
or an argument), e.g. the production Redis + Spark file. Relative registry and online-store paths in it
resolve against ``WorkLayout.feast_dir``, so each pipeline config keeps its own Feast state.
The Feast objects themselves come from the repository (``features/``), which builds them for a config
and hands them to ``ServingFeatures.apply``; after that, everything is read back through the registry.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow.dataset as ds

from serendipity.config import PipelineConfig
from serendipity.feature_store.sources import check_sources
from serendipity.layout import WorkLayout
from serendipity.schema import EVENT_TIMESTAMP, ITEM_JOIN_KEY, SERVING_FEATURE_SERVICE, USER_JOIN_KEY

if TYPE_CHECKING:
    from feast import Entity, FeatureService, FeatureStore, FeatureView

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ENTITY_COLUMNS = (ITEM_JOIN_KEY, USER_JOIN_KEY)
# Entity id of the sentinel row each feature view gets at materialisation: the API only takes ids >= 0.
SENTINEL_ID = -1


def repo_dir(config: PipelineConfig) -> Path:
    path = Path(config.features.repo_dir).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def feature_store_yaml(config: PipelineConfig, override: str | Path | None = None) -> Path:
    """The feature_store.yaml to use: ``override``, then ``features.feature_store_yaml``, then the repo's."""
    chosen = override or config.features.feature_store_yaml
    if chosen is None:
        return repo_dir(config) / "feature_store.yaml"
    path = Path(chosen).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


REDIS_SOCKET_OPTIONS = ("socket_timeout", "socket_connect_timeout")


def bound_redis_sockets(online_store: Any, timeout_s: float) -> None:
    """Give a Redis online store's client socket timeouts of ``timeout_s`` unless its connection string
    sets them: a read on a stalled server then fails after ``timeout_s`` instead of hanging its thread."""
    if getattr(online_store, "type", None) != "redis":
        return
    connection = str(online_store.connection_string)
    given = {part.split("=", 1)[0].strip() for part in connection.split(",") if "=" in part}
    added = [f"{option}={timeout_s:g}" for option in REDIS_SOCKET_OPTIONS if option not in given]
    if added:
        online_store.connection_string = ",".join([connection, *added])


class ServingFeatures:
    """One pipeline's Feast store; build once and reuse (reads do no materialisation)."""

    def __init__(self, config: PipelineConfig, feature_store_yaml_path: str | Path | None = None) -> None:
        from feast import FeatureStore

        self.config = config
        self.yaml_path = feature_store_yaml(config, feature_store_yaml_path)
        if not self.yaml_path.is_file():
            raise FileNotFoundError(f"feature_store.yaml not found at {self.yaml_path}")
        state_dir = WorkLayout.of(config).feast_dir
        (state_dir / "data").mkdir(parents=True, exist_ok=True)
        self.store: FeatureStore = FeatureStore(repo_path=str(state_dir), fs_yaml_file=self.yaml_path)
        bound_redis_sockets(self.store.config.online_store, config.serving.store_socket_timeout_s)
        self._service: FeatureService | None = None
        self._ttls: dict[str, timedelta | None] | None = None

    @property
    def offline_store_type(self) -> str:
        """The offline store of the feature_store.yaml ("file", "spark"): what the sources must be."""
        return self.store.config.offline_store.type

    def apply(self, objects: Sequence[Entity | FeatureView | FeatureService]) -> None:
        """Register entities, views and the serving FeatureService (``features.definitions`` builds them)."""
        self.store.apply(list(objects))
        self._service, self._ttls = None, None

    @property
    def service(self) -> FeatureService:
        if self._service is None:
            self._service = self.store.get_feature_service(SERVING_FEATURE_SERVICE)
        return self._service

    def _views(self) -> list[FeatureView]:
        names = {projection.name for projection in self.service.feature_view_projections}
        return [view for view in self.store.list_feature_views() if view.name in names]

    def check_sources(self) -> list[Path]:
        """Fail naming file and column unless every source matches its contract schema."""
        local = [view for view in self._views() if "://" not in str(view.batch_source.path)]
        return check_sources(local)

    def materialize(self, start: datetime, end: datetime) -> None:
        """Load rows with event time in [start, end] into the online store; re-runs are idempotent."""
        self.check_sources()
        self.store.materialize(_utc(start), _utc(end), feature_views=[view.name for view in self._views()])

    def materialize_incremental(self, end: datetime, *, full: bool = False) -> bool:
        """Load rows newer than each view's last materialisation, up to ``end``; True when it loaded all.

        A view never materialised starts at ``end - ttl`` (Feast itself would start at now - ttl, which
        loads nothing for historical data). So does every view when ``full`` is set or when the online
        store lacks the sentinel rows (emptied, e.g. Redis restarted without persistence, or switched
        to a fresh store): the registry's record of what was loaded no longer holds.
        """
        self.check_sources()
        end = _utc(end)
        full = full or not self.holds_serving_features()
        for view in self._views():
            last_end = view.most_recent_end_time
            if full or last_end is None:
                start = end - (view.ttl or timedelta(weeks=52))
                self.store.materialize(start, end, feature_views=[view.name])
            elif _utc(last_end) < end:
                self.store.materialize_incremental(end, feature_views=[view.name])
        self.write_sentinels(end)
        return full

    def write_sentinels(self, at: datetime) -> None:
        """One row per view under entity id ``SENTINEL_ID`` (a real source row, re-keyed): its presence
        tells readers and later materialisations that the online store holds the loaded window."""
        for view in self._views():
            source = view.batch_source
            rows = ds.dataset(source.path, format="parquet").head(1).to_pandas()
            if rows.empty:
                continue
            for key in view.join_keys:
                rows[key] = SENTINEL_ID
            rows[source.timestamp_field] = pd.Timestamp(_utc(at))
            self.store.write_to_online_store(view.name, rows)

    def holds_serving_features(self) -> bool:
        """Whether the online store holds the sentinel row of every view of the serving service."""
        response = self.store.get_online_features(
            features=self.service, entity_rows={ITEM_JOIN_KEY: [SENTINEL_ID], USER_JOIN_KEY: [SENTINEL_ID]}
        )
        names = list(response.proto.metadata.feature_names.val)
        stamped = {  # a missing row has no event time (Feast reports its features as present, and None)
            name: vector.event_timestamps[0].seconds > 0
            for name, vector in zip(names, response.proto.results, strict=True)
            if vector.event_timestamps
        }
        wanted = [
            feature.name
            for projection in self.service.feature_view_projections
            for feature in projection.features
        ]
        return all(stamped.get(name, False) for name in wanted)

    def online_features(
        self, item_ids: Sequence[int], user_ids: Sequence[int], now: datetime | None = None
    ) -> pd.DataFrame:
        """Serving features of each (item_ids[i], user_ids[i]); values past their view's TTL are None."""
        return pd.DataFrame(self.online_columns(item_ids, user_ids, now))

    def online_columns(
        self, item_ids: Sequence[int], user_ids: Sequence[int], now: datetime | None = None
    ) -> dict[str, list]:
        """``online_features`` as plain column lists (no DataFrame: the low-latency serving path)."""
        from feast.online_response import TIMESTAMP_POSTFIX

        if len(item_ids) != len(user_ids):
            raise ValueError(f"item_ids and user_ids differ in length: {len(item_ids)} != {len(user_ids)}")
        response = self.store.get_online_features(
            features=self.service,
            entity_rows={
                ITEM_JOIN_KEY: [int(i) for i in item_ids],
                USER_JOIN_KEY: [int(u) for u in user_ids],
            },
        ).to_dict(include_event_timestamps=True)

        now_seconds = _utc(now).timestamp() if now else time.time()
        columns: dict[str, list] = {ITEM_JOIN_KEY: list(item_ids), USER_JOIN_KEY: list(user_ids)}
        if self._ttls is None:
            self._ttls = {view.name: view.ttl for view in self._views()}
        for projection in self.service.feature_view_projections:
            ttl = self._ttls.get(projection.name)
            for feature in projection.features:
                values = response[feature.name]
                stamps = response[f"{feature.name}{TIMESTAMP_POSTFIX}"]
                if ttl:
                    values = [
                        None if stamp and now_seconds - stamp > ttl.total_seconds() else value
                        for value, stamp in zip(values, stamps, strict=True)
                    ]
                columns[feature.name] = values
        return columns

    def historical_features(self, entity_df: pd.DataFrame) -> pd.DataFrame:
        """Point-in-time join of the serving features onto (item_id, user_id, event_timestamp) rows.

        Rows come back in ``entity_df``'s order; a feature is null when no source row is at or before
        the row's event_timestamp within the view's TTL. Each view of the service is joined on its own:
        Feast's file offline store drops an entity row whose only candidates lie outside the TTL
        window instead of returning nulls, which would lose the other views' features of that row.
        """
        missing = [column for column in (*ENTITY_COLUMNS, EVENT_TIMESTAMP) if column not in entity_df.columns]
        if missing:
            raise ValueError(f"entity_df lacks columns {missing}; it has {list(entity_df.columns)}")
        joined = entity_df.reset_index(drop=True).assign(
            **{EVENT_TIMESTAMP: pd.to_datetime(entity_df[EVENT_TIMESTAMP].to_numpy(), utc=True)}
        )
        views = {view.name: view for view in self._views()}
        for projection in self.service.feature_view_projections:
            keys = [*views[projection.name].join_keys, EVENT_TIMESTAMP]
            names = [feature.name for feature in projection.features]
            rows = joined[keys].drop_duplicates()
            refs = [f"{projection.name_to_use()}:{name}" for name in names]
            found = self.store.get_historical_features(entity_df=rows, features=refs).to_df()
            found[EVENT_TIMESTAMP] = pd.to_datetime(found[EVENT_TIMESTAMP], utc=True)
            joined = joined.merge(found[[*keys, *names]], on=keys, how="left")
        return joined

"""The Feast feature store of a pipeline: apply, materialise, and read through the serving FeatureService.

The store is configured by a feature_store.yaml: the Feast repository's embedded default
(``features.repo_dir``, relative to the project root) or an alternative one (``features.feature_store_yaml``
or an argument), e.g. the production Redis + Spark file. Relative registry and online-store paths in it
resolve against ``WorkLayout.feast_dir``, so each pipeline config keeps its own Feast state.
The Feast objects themselves come from the repository (``features/``), which builds them for a config
and hands them to ``ServingFeatures.apply``; after that, everything is read back through the registry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from serendipity.config import PipelineConfig
from serendipity.feature_store.sources import check_sources
from serendipity.feature_store.state import SourceProbe, StoreState, ViewState, newest_row, stale_views, utc
from serendipity.io import write_text_atomic
from serendipity.layout import WorkLayout
from serendipity.schema import EVENT_TIMESTAMP, ITEM_JOIN_KEY, SERVING_FEATURE_SERVICE, USER_JOIN_KEY

if TYPE_CHECKING:
    from feast import Entity, FeatureService, FeatureStore, FeatureView

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ENTITY_COLUMNS = (ITEM_JOIN_KEY, USER_JOIN_KEY)
log = logging.getLogger("serendipity.features")
PIPELINE_CONFIG_FILE = "pipeline.yaml"
REPO_TEMPLATE = """\
# Written by serendipity (ServingFeatures.write_feast_repository): this pipeline's Feast repository.
# feature_store.yaml is a copy of {source}; pipeline.yaml is the pipeline config.
# Use it with the Feast CLI: feast -c <this directory> apply | materialize-incremental <end> | ...
import sys
from pathlib import Path

sys.path.insert(0, {project!r})

from features.definitions import build_definitions, warn_stale_sources  # noqa: E402
from serendipity.config import load_config  # noqa: E402

_definitions = build_definitions(load_config(Path(__file__).with_name({config!r})), {offline!r})
warn_stale_sources(_definitions)
item = _definitions.item
user = _definitions.user
item_serendipity = _definitions.item_serendipity
user_history = _definitions.user_history
item_meta = _definitions.item_meta
serendipity_serving = _definitions.serving
"""


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


@dataclass(frozen=True)
class FeastStateLocation:
    """Where a Feast repository keeps its state: the registry, and the online store (a file path, or
    the store type and its connection string)."""

    registry: str
    online_store: str

    @classmethod
    def of(cls, repo_path: Path, yaml_path: Path) -> FeastStateLocation:
        """As Feast resolves ``yaml_path`` read with ``repo_path`` (relative paths against repo_path)."""
        from feast.repo_config import load_repo_config

        repo_config = load_repo_config(repo_path, yaml_path)

        def resolved(path: str) -> str:
            if "://" in path or Path(path).is_absolute():
                return path
            return str((repo_path / path).resolve())

        registry = repo_config.registry
        online = repo_config.online_store
        online_path = getattr(online, "path", None)
        where = online_path and resolved(str(online_path))
        return cls(
            registry=resolved(str(registry.path if hasattr(registry, "path") else registry)),
            online_store=where or f"{online.type}:{getattr(online, 'connection_string', '')}",
        )


def state_location(config: PipelineConfig, override: str | Path | None = None) -> FeastStateLocation:
    """The registry and online store ``ServingFeatures(config, override)`` and the endpoint use."""
    return FeastStateLocation.of(WorkLayout.of(config).feast_dir, feature_store_yaml(config, override))


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
        self._probes: dict[str, SourceProbe] = {}
        self._clocks: dict[str, datetime] | None = None  # per view, the newest event loaded
        try:  # now, not in the first (deadline-bound) online read
            self.data_clocks()
        except Exception as error:  # noqa: BLE001 - e.g. nothing applied yet: found at the first read
            log.debug("no data clocks yet: %s: %s", type(error).__name__, error)
            self._clocks = None

    @property
    def offline_store_type(self) -> str:
        """The offline store of the feature_store.yaml ("file", "spark"): what the sources must be."""
        return self.store.config.offline_store.type

    def apply(self, objects: Sequence[Entity | FeatureView | FeatureService]) -> None:
        """Register entities, views and the serving FeatureService (``features.definitions`` builds them),
        and write the pipeline's Feast repository (``write_feast_repository``) for the ``feast`` CLI."""
        self.store.apply(list(objects))
        self._service, self._ttls, self._clocks = None, None, None
        self.write_feast_repository()

    def write_feast_repository(self) -> Path:
        """Make ``WorkLayout.feast_dir`` a Feast repository of this pipeline: ``feast -c <it> apply`` and
        ``feast -c <it> materialize-incremental`` then read the same feature_store.yaml text from the same
        repo_path as this object, so they use the same registry and online store; its repo.py builds the
        repository's objects (``features/``) for the pipeline config saved beside it."""
        from serendipity.config import save_config

        state_dir = WorkLayout.of(self.config).feast_dir
        save_config(self.config, state_dir / PIPELINE_CONFIG_FILE)
        write_text_atomic(self.yaml_path.read_text(), state_dir / "feature_store.yaml")
        write_text_atomic("data/\n", state_dir / ".feastignore")
        repo = REPO_TEMPLATE.format(
            source=self.yaml_path,
            project=str(PROJECT_ROOT),
            config=PIPELINE_CONFIG_FILE,
            offline=self.offline_store_type,
        )
        write_text_atomic(repo, state_dir / "repo.py")
        return state_dir

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
        self.store.materialize(utc(start), utc(end), feature_views=[view.name for view in self._views()])
        self._clocks = None

    def materialize_incremental(self, end: datetime, *, full: bool = False) -> bool:
        """Load rows newer than each view's last materialisation, up to ``end``; True when it reloaded all.

        A view never materialised starts at its source's last event (up to ``end``) minus its ttl, so
        historical data loads its last ttl of rows (Feast itself starts at now - ttl, which loads nothing
        when the data ended longer ago: see ``staleness_warnings``); so does a view whose earlier window
        loaded none of its rows, and every view when ``full`` is set or when the online store lost what
        the registry says was loaded (emptied, or a fresh store behind an old registry).
        """
        self.check_sources()
        end = utc(end)
        state = self.store_state()
        full = full or state.emptied
        missed = {view.name for view in state.views if view.loaded_nothing}
        views = self._views()
        for warning in self.staleness_warnings(views=views):
            log.warning(warning)
        for view in views:
            last_end = view.most_recent_end_time
            if full or last_end is None or view.name in missed:
                anchor = newest_row(view, end).last_event or end
                start = anchor - (view.ttl or timedelta(weeks=52))
                self.store.materialize(start, end, feature_views=[view.name])
            elif utc(last_end) < end:
                self.store.materialize_incremental(end, feature_views=[view.name])
        self._clocks = None
        return full

    def staleness_warnings(
        self, now: datetime | None = None, views: list[FeatureView] | None = None
    ) -> list[str]:
        """One line per view whose newest source event is older than its ttl before ``now`` (default:
        the wall clock): Feast's own ``materialize-incremental`` would load none of its rows."""
        now = utc(now) if now else datetime.now(UTC)
        views = self._views() if views is None else views
        newest = {view.name: newest_row(view, now).last_event for view in views}
        return stale_views(views, newest, now)

    def registry_state(self, now: datetime | None = None) -> StoreState:
        """What Feast's registry says each serving view holds, with its source's newest loaded row (the
        probe ``check_online`` reads back); no online-store read."""
        states = []
        for view in self._views():
            until = utc(view.most_recent_end_time) if view.most_recent_end_time else None
            starts = [utc(start) for start, _ in view.materialization_intervals]
            states.append(
                ViewState(view.name, view.ttl, until, min(starts, default=None), self._probe(view, until))
            )
        return StoreState(utc(now) if now else datetime.now(UTC), states)

    def _probe(self, view: FeatureView, until: datetime | None) -> SourceProbe | None:
        if until is None:
            return None
        cached = self._probes.get(view.name)
        if cached is not None and cached.until == until:
            return cached
        try:
            probe = newest_row(view, until)
        except (OSError, ValueError) as error:  # e.g. a remote source this process has no access to
            log.info("cannot read the source of %s to check the online store: %s", view.name, error)
            return None
        self._probes[view.name] = probe
        return probe

    def check_online(self, state: StoreState) -> StoreState:
        """``state`` with each probed view's newest loaded row looked up in the online store (one read)."""
        from feast.online_response import TIMESTAMP_POSTFIX

        asked = [view for view in state.views if view.probe and view.probe.key and not view.loaded_nothing]
        if not asked:
            return state
        rows: dict[str, list[int]] = {key: [] for key in ENTITY_COLUMNS}
        for view in asked:
            assert view.probe is not None and view.probe.key is not None
            for key in ENTITY_COLUMNS:
                rows[key].append(view.probe.key.get(key, 0))
        response = self.store.get_online_features(features=self.service, entity_rows=rows).to_dict(
            include_event_timestamps=True
        )
        projections = self.service.feature_view_projections
        first_feature = {projection.name: projection.features[0].name for projection in projections}
        found = {
            view.name: bool(response[f"{first_feature[view.name]}{TIMESTAMP_POSTFIX}"][row])
            for row, view in enumerate(asked)
        }
        checked = replace(state, views=[replace(view, found=found.get(view.name)) for view in state.views])
        self._clocks = checked.data_clocks()
        return checked

    def store_state(self, now: datetime | None = None) -> StoreState:
        return self.check_online(self.registry_state(now))

    def holds_serving_features(self) -> bool:
        """Whether every serving view was materialised and its newest loaded row is in the online store."""
        return self.store_state().holds

    def data_clocks(self) -> dict[str, datetime]:
        """Per serving view, the newest source event it loaded (cached; refreshed by ``check_online``)."""
        if self._clocks is None:
            self._clocks = self.registry_state().data_clocks()
        return self._clocks

    def online_features(
        self, item_ids: Sequence[int], user_ids: Sequence[int], now: datetime | None = None
    ) -> pd.DataFrame:
        """Serving features of each (item_ids[i], user_ids[i]); values past their view's TTL are None.

        TTLs count back from ``now`` when given (a simulation's clock), else from the newest event the
        view loaded (``data_clocks``): historical data keeps its last ttl of features instead of expiring
        against today's date. How old the store itself is, ``StoreState.age_s`` tells (readiness, metrics).
        """
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

        columns: dict[str, list] = {ITEM_JOIN_KEY: list(item_ids), USER_JOIN_KEY: list(user_ids)}
        if self._ttls is None:
            self._ttls = {view.name: view.ttl for view in self._views()}
        clocks = {} if now else self.data_clocks()
        for projection in self.service.feature_view_projections:
            ttl = self._ttls.get(projection.name)
            clock = utc(now) if now else clocks.get(projection.name)
            now_seconds = clock.timestamp() if clock else time.time()
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

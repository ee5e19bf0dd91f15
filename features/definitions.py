"""All Feast objects of the repository, built for one pipeline config."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from feast import Entity, FeatureService, FeatureView

from features.data_sources import item_meta_source, serendipity_source, user_history_source
from features.entities import item, user
from features.feature_services import serving_service
from features.feature_views import item_meta_view, item_serendipity_view, user_history_view
from serendipity.config import PipelineConfig
from serendipity.feature_store.state import newest_row, stale_views
from serendipity.layout import WorkLayout

if TYPE_CHECKING:
    from serendipity.feature_store import ServingFeatures


@dataclass(frozen=True)
class FeastDefinitions:
    item: Entity
    user: Entity
    item_serendipity: FeatureView
    user_history: FeatureView
    item_meta: FeatureView
    serving: FeatureService

    @property
    def feature_views(self) -> list[FeatureView]:
        return [self.item_serendipity, self.user_history, self.item_meta]

    def objects(self) -> list[Entity | FeatureView | FeatureService]:
        """Everything ``feast apply`` registers (the views carry their sources)."""
        return [self.item, self.user, *self.feature_views, self.serving]


def build_definitions(config: PipelineConfig, offline_store: str = "file") -> FeastDefinitions:
    """Entities, views over ``config.work_dir``'s tables, and the serving FeatureService."""
    layout = WorkLayout.of(config)
    views = (
        item_serendipity_view(serendipity_source(layout, offline_store), config.features),
        user_history_view(user_history_source(layout, offline_store), config.features),
        item_meta_view(item_meta_source(layout, offline_store), config.features),
    )
    return FeastDefinitions(item, user, *views, serving=serving_service(list(views)))


def apply_definitions(features: ServingFeatures) -> None:
    """``feast apply`` for a pipeline: this repository's objects over its work_dir, into its store."""
    features.apply(build_definitions(features.config, features.offline_store_type).objects())


def warn_stale_sources(definitions: FeastDefinitions) -> list[str]:
    """Print (to stderr) a warning per view whose data ended over its ttl ago: ``feast apply`` says so
    before ``feast materialize-incremental`` loads none of it. Returns the warnings."""
    now = datetime.now(UTC)
    newest = {}
    for view in definitions.feature_views:
        try:
            newest[view.name] = newest_row(view, now).last_event
        except (OSError, ValueError):  # a source not written yet, or not readable here
            newest[view.name] = None
    warnings = stale_views(definitions.feature_views, newest, now)
    for warning in warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    return warnings

"""The Feast feature store of a pipeline (``store``) and the contract checks of its sources (``sources``).

The Feast repository ``features/`` defines the objects and imports this package, never the reverse.
"""

from serendipity.feature_store.sources import SourceSchemaError, check_sources
from serendipity.feature_store.store import (
    PROJECT_ROOT,
    FeastStateLocation,
    ServingFeatures,
    feature_store_yaml,
    repo_dir,
    state_location,
)

__all__ = [
    "PROJECT_ROOT",
    "FeastStateLocation",
    "ServingFeatures",
    "SourceSchemaError",
    "check_sources",
    "feature_store_yaml",
    "repo_dir",
    "state_location",
]

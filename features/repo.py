"""What ``feast -c features apply`` registers (the only module Feast scans; see .feastignore).

The pipeline config comes from the environment: see features/data_sources.py. Its state stays in
features/data/; a pipeline's own store is the repository ``<work_dir>/feast/`` (feature_store.yaml).
"""

from __future__ import annotations

from features.data_sources import config_from_env, offline_store_from_env
from features.definitions import build_definitions, warn_stale_sources

_definitions = build_definitions(config_from_env(), offline_store_from_env())
warn_stale_sources(_definitions)

item = _definitions.item
user = _definitions.user
item_serendipity = _definitions.item_serendipity
user_history = _definitions.user_history
item_meta = _definitions.item_meta
serendipity_serving = _definitions.serving

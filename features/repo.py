"""What ``feast -c features apply`` registers (the only module Feast scans; see .feastignore).

The pipeline config comes from the environment: see features/data_sources.py. A pipeline's own store is
the repository ``<work_dir>/feast/`` (``serendipity features apply`` writes it); a command here whose
registry or online store is not that config's is refused (``refuse_other_state``), never run on other state.
"""

from __future__ import annotations

from features.data_sources import config_from_env, offline_store_from_env, refuse_other_state
from features.definitions import build_definitions, warn_stale_sources

_config = config_from_env()
refuse_other_state(_config)
_definitions = build_definitions(_config, offline_store_from_env())
warn_stale_sources(_definitions)

item = _definitions.item
user = _definitions.user
item_serendipity = _definitions.item_serendipity
user_history = _definitions.user_history
item_meta = _definitions.item_meta
serendipity_serving = _definitions.serving

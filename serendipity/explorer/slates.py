"""The exploitation baseline for an explorer request: what the sequence model alone would show.

The same arm the experiment runs (``ExploitationArm``): the user's stored recent items (read from the
online store, as serving reads them) + the context item -> SASRec query -> unrestricted top k, minus
seen items. Shown next to the served slate so the cluster restriction's effect is visible.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from serendipity.eval.arms import ExploitationArm, SlateRequest
from serendipity.retrieval.recommend import Recommender
from serendipity.schema import RECENT_ITEMS_FEATURE

log = logging.getLogger(__name__)


def stored_history(recommender: Recommender, user_id: int, context_item_id: int) -> tuple[list[int], bool]:
    """(the user's stored recent items, oldest first; whether the store could not be read)."""
    if recommender.features is None:
        return [], True
    try:
        frame = recommender.features.online_features([int(context_item_id)], [int(user_id)])
    except Exception as error:  # noqa: BLE001 - the baseline goes on without history, marked degraded
        log.warning("explorer: feature read failed: %s: %s", type(error).__name__, error)
        return [], True
    value = frame[RECENT_ITEMS_FEATURE].iloc[0] if RECENT_ITEMS_FEATURE in frame else None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return [], False
    return [int(item) for item in reversed(list(value))], False  # the feature is newest first


def exploitation_baseline(
    recommender: Recommender, user_id: int, context_item_id: int, k: int
) -> dict[str, Any]:
    """The baseline slate as the explorer's JSON: items with scores and clusters, and ``degraded``."""
    stored, degraded = stored_history(recommender, user_id, context_item_id)
    request = SlateRequest(int(user_id), int(context_item_id), [], stored, frozenset())
    slate = ExploitationArm(recommender).recommend([request], k)[0]
    return {
        "items": [
            {"item_id": item.item_id, "score": float(item.score), "cluster_id": item.cluster_id}
            for item in slate.items
        ],
        "source": slate.source,
        "degraded": degraded,
        "history_length": len(stored),
    }

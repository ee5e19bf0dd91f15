"""The exploitation baseline for an explorer request: what the sequence model alone would show.

The same arm the experiment runs (``ExploitationArm``): the user's stored recent items (read from the
online store, as serving reads them) + the context item -> SASRec query -> unrestricted top k, minus
seen items. Shown next to the served slate so the cluster restriction's effect is visible.
"""

from __future__ import annotations

import math
from typing import Any

from serendipity.eval.arms import ExploitationArm, SlateRequest
from serendipity.retrieval.recommend import Recommender
from serendipity.schema import RECENT_ITEMS_FEATURE


def stored_history(recommender: Recommender, user_id: int, context_item_id: int) -> tuple[list[int], bool]:
    """(the user's stored recent items, oldest first; whether the store could not be read), read through
    the recommender's guarded path, as serving reads: a deadline, reads in flight bounded, never an error."""
    rows, degraded = recommender._read_features([int(user_id)], [int(context_item_id)])
    value = rows[0].get(RECENT_ITEMS_FEATURE) if rows else None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return [], degraded
    return [int(item) for item in reversed(list(value))], degraded  # the feature is newest first


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

"""The one FeatureService that serving, training data and evaluation read through."""

from __future__ import annotations

from feast import FeatureService, FeatureView

from serendipity.schema import SERVING_FEATURE_SERVICE


def serving_service(views: list[FeatureView]) -> FeatureService:
    return FeatureService(
        name=SERVING_FEATURE_SERVICE,
        features=views,
        description="Context item serendipity + item metadata + user history, for serving and training.",
    )

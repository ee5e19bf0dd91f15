"""The ``features:`` and ``engagement:`` sections: the Feast repository and views; what counts as engaged."""

from __future__ import annotations

from pydantic import Field

from serendipity.config.base import Section


class FeaturesConfig(Section):
    """Feast: the repository (relative to the project root), an alternative feature_store.yaml, the views."""

    repo_dir: str = "features"
    feature_store_yaml: str | None = None  # e.g. infra/feast/prod/feature_store.yaml; None: the repo's
    history_length: int = Field(20, ge=1)  # engaged item ids in the user_history feature
    serendipity_ttl_days: int = Field(30, ge=1)
    history_ttl_days: int = Field(90, ge=1)
    item_meta_ttl_days: int = Field(365, ge=1)


class EngagementConfig(Section):
    """What counts as an engaged interaction: in user histories, the retriever's training data, evaluation."""

    satisfaction_above: float = 0.5  # an interaction is engaged when its satisfaction is above this

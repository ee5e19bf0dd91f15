"""The ``eval:`` section: the simulated live experiment, and the seeds it runs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from serendipity.config.base import Fraction, Section


def _distinct_seeds(value: tuple[int, ...]) -> tuple[int, ...]:
    if not value or len(set(value)) != len(value):
        raise ValueError("seeds must be a non-empty list of distinct integers")
    return value


Seeds = Annotated[tuple[int, ...], AfterValidator(_distinct_seeds)]


class EvalConfig(Section):
    """The simulated live experiment (``serendipity.eval``, ``ray_jobs/evaluate.py``)."""

    seeds: Seeds = (0, 1, 2)
    days: int = Field(3, ge=1)
    users_per_arm: int = Field(100, ge=1)
    slate_size: int = Field(10, ge=1)
    sessions_per_day: int = Field(3, ge=1)
    engaged_day_share: Fraction = 0.5  # an engaged user-day: more than this share of its impressions positive
    richness_buckets: int = Field(5, ge=1)  # quantile buckets of the context items' visual richness
    context_affinity_floor: float = Field(0.1, ge=0)  # context draw odds: popularity * (affinity + floor)
    num_shards: int = Field(2, ge=1)  # Ray actors, each simulating a share of every arm's users
    cpus_per_shard: float = Field(1.0, gt=0)
    bandit_feature_dim: int = Field(16, ge=1)  # fixed random projection of [context vector, user query]
    bandit_prior_precision: float = Field(1.0, gt=0)  # ridge prior of each cluster's linear head
    bandit_noise_variance: float = Field(0.25, gt=0)  # reward noise of the Gaussian posterior
    # the exploration arm's query: this weight on the context item's vector, the rest on the SASRec query
    exploration_context_weight: Fraction = 0.8
    # diagnostic arms run next to the paper's four; "exploration_novel" drops the user's engaged clusters
    extra_arms: tuple[Literal["exploration_novel"], ...] = ()


def parse_seeds(text: str) -> list[int]:
    """Distinct seeds from comma-separated integers, e.g. ``"0,1,2"``; ValueError otherwise."""
    try:
        return list(_distinct_seeds(tuple(int(part) for part in text.split(",") if part.strip())))
    except ValueError:
        raise ValueError(f"expected distinct comma-separated integers, got {text!r}") from None

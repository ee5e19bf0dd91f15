"""The world's users: openness, activity and interests over level-2 clusters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serendipity.world.rules import WorldRules


@dataclass(frozen=True)
class Population:
    """Per-user arrays; the user id is the array index. Favourites are padded with -1 / weight 0."""

    openness: np.ndarray
    activity: np.ndarray  # share of all interactions
    favourite_l2: np.ndarray  # [users, MAX_FAVOURITE_L2] local level-2 indices
    favourite_weight: np.ndarray  # [users, MAX_FAVOURITE_L2], rows sum to 1

    def __len__(self) -> int:
        return len(self.openness)


def build_population(
    n_users: int, l2_mass: np.ndarray, rules: WorldRules, rng: np.random.Generator
) -> Population:
    """Users favour popular level-2 clusters more often (Gumbel top-k over sqrt of their mass)."""
    n_l2 = len(l2_mass)
    slots = min(rules.max_favourite_l2, n_l2)
    openness = rng.beta(2.0, 2.0, n_users)
    activity = rng.lognormal(0.0, 1.0, n_users)
    activity /= activity.sum()

    keys = 0.5 * np.log(l2_mass)[None, :] + rng.gumbel(size=(n_users, n_l2))
    favourites = np.argsort(-keys, axis=1, kind="stable")[:, :slots]
    counts = rng.integers(1, slots + 1, n_users)
    used = np.arange(slots)[None, :] < counts[:, None]
    weights = rng.exponential(1.0, (n_users, slots)) * used
    weights /= weights.sum(axis=1, keepdims=True)
    return Population(
        openness=openness,
        activity=activity,
        favourite_l2=np.where(used, favourites, -1).astype(np.int64),
        favourite_weight=weights,
    )

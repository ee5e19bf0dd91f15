"""The logging policy: sessions, timestamps and the item chains of the old (cue-unaware) recommender.

Fully vectorised: timestamps with per-user cumulative sums, item chains one session position at a
time across every session at once (a loop over positions, never over interactions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serendipity.world.catalog import SECONDS_PER_DAY, Catalog
from serendipity.world.population import Population
from serendipity.world.rules import WorldRules
from serendipity.world.taxonomy import Taxonomy

RESAMPLE_ATTEMPTS = 4


@dataclass(frozen=True)
class Logs:
    user: np.ndarray
    item: np.ndarray
    ts_s: np.ndarray  # seconds since the period start
    context: np.ndarray  # previous item of the same session, -1 at a session start
    session: np.ndarray


def _group_cumsum(values: np.ndarray, group_start: np.ndarray, group_of: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sum within contiguous groups (``group_start[g]`` = first row of group g)."""
    total = np.cumsum(values)
    before = total[group_start] - values[group_start]
    return total - before[group_of]


def build_timeline(
    population: Population, n_interactions: int, days: int, rules: WorldRules, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per interaction: user, session, position in session, seconds since the period start (by user, time)."""
    counts = rng.multinomial(n_interactions, population.activity)
    user = np.repeat(np.arange(len(population)), counts)
    user_first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    row = np.arange(n_interactions)
    is_start = (row == user_first[user]) | (rng.random(n_interactions) < 1.0 / rules.session_mean_length)
    session = np.cumsum(is_start) - 1
    session_first = np.flatnonzero(is_start)
    position = row - session_first[session]

    gaps = rules.session_item_gap_min_s + rng.exponential(rules.session_item_gap_mean_s, n_interactions)
    gaps = np.minimum(gaps, rules.session_item_gap_max_s)
    gaps[is_start] = 0.0
    within = _group_cumsum(gaps, session_first, session)

    session_user = user[session_first]
    n_sessions = len(session_first)
    duration = np.bincount(session, weights=gaps, minlength=n_sessions)
    n_users = len(population)
    sessions_per_user = np.bincount(session_user, minlength=n_users)
    busy = np.bincount(session_user, weights=duration, minlength=n_users)
    min_gap = rules.session_gap_min_h * 3600.0
    free = np.maximum(days * SECONDS_PER_DAY - busy - np.maximum(sessions_per_user - 1, 0) * min_gap, 0.0)
    # Free time is split at random between the lead-in, the gaps between sessions and the tail.
    share = rng.exponential(1.0, n_sessions)
    tail = rng.exponential(1.0, n_users)
    share_total = np.bincount(session_user, weights=share, minlength=n_users) + tail
    first_session_of_user = np.r_[True, session_user[1:] != session_user[:-1]]
    previous_duration = np.r_[0.0, duration[:-1]]
    increment = free[session_user] * share / share_total[session_user]
    increment += np.where(first_session_of_user, 0.0, min_gap + previous_duration)
    user_session_first = np.flatnonzero(first_session_of_user)
    session_rank_user = np.cumsum(first_session_of_user) - 1
    session_start = _group_cumsum(increment, user_session_first, session_rank_user)
    ts_s = session_start[session] + within
    return user, session, position, ts_s


class ClusterSampler:
    """Draws items inside level-3 clusters by popularity, among items created before a time."""

    def __init__(self, catalog: Catalog, n_l3: int) -> None:
        self.order = np.argsort(catalog.l3, kind="stable")
        sorted_pop = catalog.popularity[self.order]
        self.cumulative = np.cumsum(sorted_pop)
        self.first = np.searchsorted(catalog.l3[self.order], np.arange(n_l3), side="left")
        self.last = np.searchsorted(catalog.l3[self.order], np.arange(n_l3), side="right") - 1
        self.base = self.cumulative[self.first] - sorted_pop[self.first]
        self.mass = self.cumulative[self.last] - self.base
        self.created = catalog.created_s
        oldest_sorted = np.lexsort((catalog.created_s[self.order], catalog.l3[self.order]))
        self.anchor = self.order[oldest_sorted][self.first]

    def sample(self, l3: np.ndarray, at_s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        items = self._draw(l3, rng)
        for _ in range(RESAMPLE_ATTEMPTS):
            late = np.flatnonzero(self.created[items] > at_s)
            if len(late) == 0:
                return items
            items[late] = self._draw(l3[late], rng)
        late = self.created[items] > at_s
        items[late] = self.anchor[l3[late]]
        return items

    def _draw(self, l3: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        target = self.base[l3] + rng.random(len(l3)) * self.mass[l3]
        position = np.searchsorted(self.cumulative, target, side="right")
        return self.order[np.clip(position, self.first[l3], self.last[l3])]


def _interest_l3(
    users: np.ndarray, population: Population, l3_share: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """A favourite level-2 cluster by the user's weights, then a child level-3 cluster by popularity."""
    weights = np.cumsum(population.favourite_weight[users], axis=1)
    used = (population.favourite_l2[users] >= 0).sum(axis=1)
    slot = np.minimum((rng.random(len(users))[:, None] > weights).sum(axis=1), used - 1)
    l2 = population.favourite_l2[users, slot]
    child = (rng.random(len(l2))[:, None] > np.cumsum(l3_share[l2], axis=1)).sum(axis=1)
    return l2 * l3_share.shape[1] + np.minimum(child, l3_share.shape[1] - 1)


def simulate_logs(
    taxonomy: Taxonomy,
    catalog: Catalog,
    population: Population,
    n_interactions: int,
    days: int,
    rules: WorldRules,
    rng: np.random.Generator,
) -> Logs:
    user, session, position, ts_s = build_timeline(population, n_interactions, days, rules, rng)
    siblings = taxonomy.branching[2]
    n_l3 = taxonomy.count(3)
    sampler = ClusterSampler(catalog, n_l3)
    l3_share = (sampler.mass / sampler.mass.reshape(-1, siblings).sum(axis=1).repeat(siblings)).reshape(
        -1, siblings
    )

    item = np.empty(n_interactions, dtype=np.int64)
    by_position = np.argsort(position, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(position))])
    for step in range(len(bounds) - 1):
        rows = by_position[bounds[step] : bounds[step + 1]]
        if step == 0:
            target = _interest_l3(user[rows], population, l3_share, rng)
        else:
            previous_l3 = catalog.l3[item[rows - 1]]
            draw = rng.random(len(rows))
            sibling = (previous_l3 // siblings) * siblings + (
                previous_l3 % siblings + rng.integers(1, siblings, len(rows))
            ) % siblings
            target = np.where(
                draw < rules.p_same_l3,
                previous_l3,
                np.where(
                    draw < rules.p_same_l3 + rules.p_sibling_l3,
                    sibling,
                    _interest_l3(user[rows], population, l3_share, rng),
                ),
            )
        item[rows] = sampler.sample(target, ts_s[rows], rng)
    context = np.where(position > 0, np.r_[-1, item[:-1]], -1)
    return Logs(user=user, item=item, ts_s=ts_s, context=context, session=session)

"""The simulated live experiment: disjoint user segments per arm, simulated days after the logs end,
every impression answered by the world's ``UserSimulator`` (its fixed rules, never tuned to the result).

Per user and day, ``eval.sessions_per_day`` sessions: the user watches a context item drawn from the
popular corpus with odds impressions * (affinity + ``eval.context_affinity_floor``) from a generator
seeded by (seed, day, session, user) only, so every arm draws its contexts the same way; the arm answers
a slate of ``eval.slate_size``; each impression's satisfaction is drawn with the context item as context;
positive = satisfaction > ``engagement.satisfaction_above``; engaged items join the user's in-simulation
history. Users are split into shards, each simulated by one Ray actor holding one ``Recommender``; the
bandit's posterior lives in the driver and is updated after every day from that day's slates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from serendipity.config import PipelineConfig
from serendipity.eval.arms import ARMS, BANDIT, MLLM, BanditArm, Slate, SlateRequest, arm_names, build_arms
from serendipity.eval.bandit import FeatureMap, NeuralLinearBandit
from serendipity.eval.inputs import load_pre_experiment

CONTEXT_STREAM, SATISFACTION_STREAM = 0, 1
IMPRESSION_COLUMNS = (
    "seed", "day", "session", "arm", "user_id", "context_item_id", "item_id", "cluster_id",
    "position", "satisfaction", "positive", "nominated_cluster", "source",
)  # fmt: skip


def assign_segments(
    user_ids: np.ndarray, users_per_arm: int, seed: int, arms: tuple[str, ...] = ARMS
) -> dict[str, list[int]]:
    """Disjoint, equal-sized random user segments, one per arm."""
    needed = users_per_arm * len(arms)
    if needed > len(user_ids):
        raise ValueError(
            f"eval.users_per_arm={users_per_arm} needs {needed} users for {len(arms)} arms; "
            f"the world has {len(user_ids)}"
        )
    chosen = np.random.default_rng([seed, 104729]).permutation(np.sort(user_ids))[:needed]
    return {arm: sorted(int(u) for u in chosen[i :: len(arms)]) for i, arm in enumerate(arms)}


def session_time(logs_end: pd.Timestamp, day: int, session: int, sessions_per_day: int) -> datetime:
    """Simulated days start right after the logs; sessions are spread evenly over each day."""
    offset = timedelta(days=day) + timedelta(days=1) * (session + 0.5) / sessions_per_day
    return (logs_end + offset).to_pydatetime()


Observation = tuple[int, int, int, np.ndarray, float]  # (user, session, chosen cluster, x, reward)


@dataclass
class DayResult:
    impressions: pd.DataFrame
    bandit_observations: list[Observation]  # the bandit arm's slates of the day


def update_bandit(bandit: NeuralLinearBandit, results: list[DayResult]) -> None:
    """Add a day's observations in (user, session) order, so the posterior does not depend on sharding."""
    observations = sorted((o for r in results for o in r.bandit_observations), key=lambda o: (o[0], o[1]))
    if observations:
        features = np.stack([o[3] for o in observations])
        bandit.update([o[2] for o in observations], features, [o[4] for o in observations])


class ShardSimulator:
    """Simulates a share of every arm's users; loads the Recommender and the world once."""

    def __init__(self, config: PipelineConfig) -> None:
        import torch

        from serendipity.retrieval.recommend import Recommender
        from serendipity.world import UserSimulator

        torch.set_num_threads(1)
        self.config = config
        self.now = datetime.fromtimestamp(0, UTC)
        self.recommender = Recommender.load(config, clock=lambda: self.now)
        self.world = UserSimulator.load(config.dataset_dir)
        self.inputs = load_pre_experiment(config)
        self.arms = build_arms(self.recommender, config.eval)
        self.seed = 0
        self.users: dict[int, str] = {}
        self.history: dict[int, list[int]] = {}
        self.engaged: dict[int, set[int]] = {}

    def describe(self) -> tuple[int, list[int]]:
        """(embedding dimension, clusters of the index): what the driver's bandit needs."""
        return self.recommender.index.dim, self.recommender.cluster_ids

    def start(self, seed: int, users: dict[int, str]) -> None:
        """A fresh run: ``users`` maps each user of this shard to its arm; in-simulation state is reset."""
        self.seed = seed
        self.users = dict(users)
        self.history = {user: [] for user in users}
        self.engaged = {user: set(self.inputs.engaged_clusters.get(user, ())) for user in users}

    def _context(self, user: int, rng: np.random.Generator) -> int:
        corpus = self.inputs.corpus
        items = corpus["item_id"].to_numpy(np.int64)
        affinity = self.world.affinity(np.full(len(items), user, dtype=np.int64), items)
        odds = corpus["impressions"].to_numpy(np.float64) * (
            affinity + self.config.eval.context_affinity_floor
        )
        total = odds.sum()
        return int(rng.choice(items, p=odds / total)) if total > 0 else int(rng.choice(items))

    def run_day(self, day: int, bandit: NeuralLinearBandit) -> DayResult:
        bandit_arm = self.arms[BANDIT]
        assert isinstance(bandit_arm, BanditArm)
        bandit_arm.bandit = bandit
        rows: list[dict[str, Any]] = []
        observations: list[Observation] = []
        for session in range(self.config.eval.sessions_per_day):
            self.now = session_time(self.inputs.logs_end, day, session, self.config.eval.sessions_per_day)
            for arm_name in self.arms:
                users = sorted(u for u, a in self.users.items() if a == arm_name)
                if users:
                    self._session(arm_name, users, day, session, rows, observations)
        frame = pd.DataFrame(rows, columns=list(IMPRESSION_COLUMNS))
        frame["nominated_cluster"] = frame["nominated_cluster"].astype("Int64")
        return DayResult(frame, observations)

    def _session(
        self,
        arm_name: str,
        users: list[int],
        day: int,
        session: int,
        rows: list[dict[str, Any]],
        observations: list[Observation],
    ) -> None:
        requests = []
        for user in users:
            context_rng = np.random.default_rng([self.seed, day, session, user, CONTEXT_STREAM])
            requests.append(
                SlateRequest(
                    user,
                    self._context(user, context_rng),
                    list(self.history[user]),
                    list(self.inputs.stored_history.get(user, [])),
                    frozenset(self.engaged[user]),
                    (self.seed, day, session, user),
                )
            )
        slates = self.arms[arm_name].recommend(requests, self.config.eval.slate_size)
        for request, slate in zip(requests, slates, strict=True):
            positives = self._answer(arm_name, request, slate, day, session, rows)
            if arm_name == BANDIT and slate.nominated_cluster is not None and slate.features is not None:
                observations.append(
                    (
                        request.user_id,
                        session,
                        slate.nominated_cluster,
                        slate.features,
                        float(np.mean(positives)),
                    )
                )

    def _answer(
        self, arm_name: str, request: SlateRequest, slate: Slate, day: int, session: int, rows: list[dict]
    ) -> np.ndarray:
        """Draw the user's satisfaction with each impression; engaged items join the user's history."""
        if not slate.items:
            return np.zeros(1)
        user = request.user_id
        item_ids = np.array([item.item_id for item in slate.items], dtype=np.int64)
        rng = np.random.default_rng([self.seed, day, session, user, SATISFACTION_STREAM])
        satisfaction = self.world.satisfaction(
            np.full(len(item_ids), user, dtype=np.int64),
            item_ids,
            np.full(len(item_ids), request.context_item_id, dtype=np.int64),
            rng,
        )
        positive = satisfaction > self.config.engagement.satisfaction_above
        for position, (item, value, liked) in enumerate(
            zip(slate.items, satisfaction, positive, strict=True)
        ):
            rows.append(
                {
                    "seed": self.seed,
                    "day": day,
                    "session": session,
                    "arm": arm_name,
                    "user_id": user,
                    "context_item_id": request.context_item_id,
                    "item_id": item.item_id,
                    "cluster_id": item.cluster_id,
                    "position": position,
                    "satisfaction": float(value),
                    "positive": bool(liked),
                    "nominated_cluster": slate.nominated_cluster,
                    "source": slate.source if arm_name == MLLM else arm_name,
                }
            )
            if liked:
                self.history[user].append(item.item_id)
                self.engaged[user].add(item.cluster_id)
        return positive.astype(np.float64)


def new_bandit(
    config: PipelineConfig, input_dim: int, cluster_ids: list[int], seed: int
) -> NeuralLinearBandit:
    return NeuralLinearBandit(
        cluster_ids,
        FeatureMap(input_dim, config.eval.bandit_feature_dim, seed),
        prior_precision=config.eval.bandit_prior_precision,
        noise_variance=config.eval.bandit_noise_variance,
    )


def run_experiment(config: PipelineConfig) -> pd.DataFrame:
    """Every seed of ``config.eval``: the impressions of all arms, as one frame (``IMPRESSION_COLUMNS``)."""
    import ray

    from serendipity.world import UserSimulator

    settings = config.eval
    world_users = UserSimulator.load(config.dataset_dir).users.column("user_id").to_numpy()
    actor_class = ray.remote(ShardSimulator)
    shards = [
        actor_class.options(num_cpus=settings.cpus_per_shard).remote(config)
        for _ in range(settings.num_shards)
    ]
    try:
        input_dim, cluster_ids = ray.get(shards[0].describe.remote())
        frames = []
        for seed in settings.seeds:
            segments = assign_segments(world_users, settings.users_per_arm, seed, arm_names(settings))
            shard_users: list[dict[int, str]] = [{} for _ in shards]
            for arm, users in segments.items():
                for position, user in enumerate(users):
                    shard_users[position % len(shards)][user] = arm
            ray.get(
                [shard.start.remote(seed, users) for shard, users in zip(shards, shard_users, strict=True)]
            )
            bandit = new_bandit(config, input_dim, cluster_ids, seed)
            for day in range(settings.days):
                results: list[DayResult] = ray.get([shard.run_day.remote(day, bandit) for shard in shards])
                frames += [result.impressions for result in results]
                update_bandit(bandit, results)
    finally:
        for shard in shards:
            ray.kill(shard)
    impressions = pd.concat(frames, ignore_index=True)
    return impressions.sort_values(
        ["seed", "day", "session", "arm", "user_id", "position"], kind="stable"
    ).reset_index(drop=True)

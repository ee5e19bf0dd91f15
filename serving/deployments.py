"""Serve deployments: the recommender holding a ``Recommender`` (the ingress is ``serving.ingress``; the
colocated topology's deployment, API and model in one, is ``serving.colocated``).

A ``StoreMonitor`` thread re-opens and checks the replica's online store (readiness, degraded answers).
The recommender answers concurrent requests in batches (one worker thread per batch, so the event
loop stays free and the loaded model is used by one thread at a time). ``reconfigure`` loads the
new version completely in a thread, then swaps one reference: requests in flight finish on the old
one, later requests use the new one, and none is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from ray import serve

from serendipity.config import PipelineConfig, ServingConfig, load_config
from serendipity.layout import WorkLayout
from serving.metrics import record_feature_read, record_served_versions
from serving.request_log import SERVED_BY, served_by
from serving.settings import SERVE_LOGGING, RecommenderUserConfig, optional_path, pipeline_config_path
from serving.store_monitor import StoreMonitor

log = logging.getLogger("serendipity.serving")


@dataclass(frozen=True)
class LoadedRecommender:
    source: RecommenderUserConfig  # with config_path and feature_store_yaml resolved
    config: PipelineConfig
    recommender: Any  # serendipity.retrieval.recommend.Recommender
    loaded_at: float
    served_by: dict[str, str | None] = field(default_factory=dict)  # versions, for the request log


def features_model_version(config: PipelineConfig) -> str | None:
    """The model version of the last batch inference (what made the served features), if it recorded one."""
    from serendipity.inference.summary import InferenceSummary

    path = WorkLayout.of(config).job_stats_path("infer")
    try:
        return InferenceSummary.read(path).model_version if path.is_file() else None
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("could not read the model version from %s", path, exc_info=True)
        return None


def load_recommender(source: RecommenderUserConfig) -> LoadedRecommender:
    from serendipity.retrieval.recommend import Recommender

    assert source.config_path is not None
    config = load_config(source.config_path, overrides=dict(source.overrides))
    timeout_s = config.serving.feature_timeout_ms / 1000
    recommender = Recommender.load(
        config, source.feature_store_yaml, feature_timeout_s=timeout_s, cold_start=True
    )
    recommender.observe_feature_reads(record_feature_read)
    model_version = features_model_version(config)
    record_served_versions(model_version, source.retriever_version)
    versions = served_by(model_version, source.retriever_version)
    return LoadedRecommender(source, config, recommender, time.time(), versions)


def recommendation_payload(recommendation: Any) -> dict[str, Any]:
    """A ``Recommendation`` as the JSON body of /recommend."""
    cluster = None
    if recommendation.cluster_id is not None:
        cluster = {"id": recommendation.cluster_id, "description": recommendation.cluster_description}
    return {
        "items": [
            {"item_id": int(item.item_id), "score": float(item.score), "cluster_id": int(item.cluster_id)}
            for item in recommendation.items
        ],
        "cluster": cluster,
        "reasoning": recommendation.reasoning,
        "source": recommendation.source,
        "degraded": bool(recommendation.degraded),
        "cold_start": bool(recommendation.cold_start),
    }


Answer = dict[str, Any] | ValueError


def answer_all(loaded: LoadedRecommender, requests: list[dict[str, Any]]) -> list[Answer]:
    """One ``recommend_many`` call (one feature read, one forward pass) for the batch's valid requests."""
    from serendipity.retrieval.recommend import RecommendArgs

    recommender = loaded.recommender
    answers: list[Answer | None] = [None] * len(requests)
    valid = []
    for position, request in enumerate(requests):
        if 1 <= request["k"] <= recommender.max_k:
            valid.append(position)
        else:
            answers[position] = ValueError(f"k must be between 1 and serving.max_k={recommender.max_k}")
    batch = [
        RecommendArgs(request["user_id"], request["context_item_id"], request["k"], request.get("history"))
        for request in (requests[p] for p in valid)
    ]
    for position, recommendation in zip(valid, recommender.recommend_many(batch), strict=True):
        payload = recommendation_payload(recommendation)  # degraded ones: warned, rate-limited
        payload[SERVED_BY] = loaded.served_by  # taken out by the ingress, for its request log
        answers[position] = payload
    return [answer for answer in answers if answer is not None]


def warm_up(loaded: LoadedRecommender) -> None:
    """One recommendation before the first request (first forward pass, first index search, lazy
    imports), so that request fits the ingress's deadline; a failure here is only logged."""
    try:
        popular = loaded.recommender.popular_items(1)
        if popular:
            request = {"user_id": 0, "context_item_id": int(popular[0].item_id), "k": 1, "history": None}
            answer_all(loaded, [request])
    except Exception:  # noqa: BLE001 - the replica serves anyway; a cold first request may degrade
        log.warning("recommender warm-up failed", exc_info=True)


def readiness_of(loaded: LoadedRecommender) -> dict[str, Any]:
    """Ready once model, index and feature store are loaded and the store holds the serving features
    (as of the monitor's last check; the store is None while it will not open)."""
    feature_store_loaded = loaded.recommender.features is not None
    holds_features = feature_store_loaded and loaded.recommender.store_holds_features
    return {
        "ready": holds_features,
        "feature_store_loaded": feature_store_loaded,
        "store_holds_features": holds_features,
        "store": getattr(loaded.recommender, "store_report", None),  # what the store monitor saw, and why
        "indexed_items": len(loaded.recommender.index),
        "retriever_version": loaded.source.retriever_version,
        "config": loaded.config.name,
        "loaded_at": loaded.loaded_at,
    }


class RecommenderCore:
    """One loaded ``Recommender`` answering in batches, its store monitor and its hot swap: ``user_config``
    (``RecommenderUserConfig``) swaps it. The split topology's recommender deployment and the colocated
    one (``serving.colocated``, API and model in one replica) both are one."""

    def __init__(self, config_path: str, feature_store_yaml: str | None = None) -> None:
        self._defaults = RecommenderUserConfig(
            config_path=str(pipeline_config_path(config_path)),
            feature_store_yaml=optional_path(feature_store_yaml),
        )
        self._loaded = load_recommender(self._defaults)
        self._swap_lock = asyncio.Lock()
        serving = self._loaded.config.serving
        self._apply_batching(serving)
        self._monitor = StoreMonitor(
            lambda: self._loaded, serving.store_check_interval_s, serving.feature_timeout_ms / 1000
        )
        self._monitor.check(self._loaded)
        warm_up(self._loaded)

    def _resolve(self, wanted: RecommenderUserConfig) -> RecommenderUserConfig:
        return wanted.model_copy(
            update={
                "config_path": str(pipeline_config_path(wanted.config_path or self._defaults.config_path)),
                "feature_store_yaml": optional_path(
                    wanted.feature_store_yaml or self._defaults.feature_store_yaml
                ),
            }
        )

    def _apply_batching(self, serving: ServingConfig) -> None:
        self._recommend_batch.set_max_batch_size(serving.max_batch_size)
        self._recommend_batch.set_batch_wait_timeout_s(serving.batch_wait_timeout_s)

    async def reconfigure(self, user_config: dict[str, Any] | None) -> None:
        wanted = self._resolve(RecommenderUserConfig.model_validate(user_config or {}))
        async with self._swap_lock:
            if wanted == self._loaded.source:
                return
            log.info("loading recommender %s", wanted.model_dump())
            loaded = await asyncio.to_thread(load_recommender, wanted)
            await asyncio.to_thread(self._monitor.check, loaded)
            self._loaded = loaded
            self._apply_batching(loaded.config.serving)
            log.info("now serving recommender version %s", wanted.retriever_version)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _recommend_batch(self, requests: list[dict[str, Any]]) -> list[Answer]:
        return await asyncio.to_thread(answer_all, self._loaded, requests)

    async def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """The recommendation for ``request`` (a ``RecommendRequest`` as a dict), answered in a batch."""
        answer = await self._recommend_batch(request)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def status(self) -> dict[str, Any]:
        return readiness_of(self._loaded)

    def popular_items(self, k: int) -> list[dict[str, Any]]:
        """The ``k`` most popular items: the ingress keeps them to answer while no replica can."""
        items = self._loaded.recommender.popular_items(k)
        return [{"item_id": item.item_id, "score": 0.0, "cluster_id": item.cluster_id} for item in items]

    def pipeline_source(self) -> dict[str, Any]:
        """What the loaded recommender was built from (config path, overrides): the explorer loads it too."""
        return self._loaded.source.model_dump()

    def pid(self) -> int:
        """This replica's process id (fault tests kill it)."""
        return os.getpid()

    def stop_monitor(self) -> None:
        monitor = getattr(self, "_monitor", None)
        if monitor is not None:
            monitor.stop()


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64, logging_config=SERVE_LOGGING)
class RecommenderDeployment(RecommenderCore):
    """The split topology's recommender: the ingress (``serving.ingress``) calls it through a handle."""

    async def recommend(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self.answer(request)

    def readiness(self) -> dict[str, Any]:
        return self.status()

    def __del__(self) -> None:
        self.stop_monitor()


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)
class NoOpRecommender:
    """Answers every request with an empty recommendation: the Serve overhead, for benchmarks."""

    async def recommend(self, request: dict[str, Any]) -> dict[str, Any]:
        return {
            "items": [],
            "cluster": None,
            "reasoning": None,
            "source": "fallback",
            "degraded": False,
            "cold_start": False,
        }

    def popular_items(self, k: int) -> list[dict[str, Any]]:
        return []

    def readiness(self) -> dict[str, Any]:
        return {"ready": True, "retriever_version": "no-op", "config": None, "loaded_at": 0.0}

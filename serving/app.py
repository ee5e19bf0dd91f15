"""The Serve application: ``serving.app:build_app`` (import path of serving/config.yaml).

    serve run serving/config.yaml                     # local Ray, http://127.0.0.1:8000/docs
    SERENDIPITY_CONFIG=/path/pipeline.yaml serve run serving/config.yaml

The same config.yaml is the ``serveConfigV2`` of a KubeRay RayService. The pipeline config comes from
``args.config_path``, else $SERENDIPITY_CONFIG, else configs/demo.yaml of the repository.
No ``from __future__ import annotations``: Serve reads the builder's annotation to validate ``args``.
"""

from typing import Any, Literal

from ray.serve import Application
from ray.serve.config import BackpressureConfig

from serendipity.config import ServingConfig, load_config
from serving.colocated import ColocatedRecommender
from serving.deployments import NoOpRecommender, RecommenderDeployment
from serving.ingress import RecommendIngress
from serving.settings import AppArgs, optional_path, pipeline_config_path

Topology = Literal["split", "colocated"]


def ingress_limits(serving: ServingConfig) -> dict[str, Any]:
    """Load shedding in front of the ingress. Each ingress replica works on ``max_in_flight`` requests and
    answers more at once with 503 + Retry-After (``RequestGuard``, before reading the body); Serve sends
    it up to ``max_queued_requests`` beyond that, so no request waits in the proxy's queue while the
    ingress could refuse it, and the proxy itself refuses (503 + Retry-After) when even that is full."""
    return {
        "max_ongoing_requests": serving.max_in_flight + serving.max_queued_requests,
        "max_queued_requests": serving.max_queued_requests,
        "backpressure_config": BackpressureConfig(status_code=503, retry_after_s=serving.retry_after_s),
    }


def recommender_scaling(serving: ServingConfig) -> dict[str, Any]:
    """The recommender's replicas: Serve's autoscaling_config with ``serving.autoscaling`` enabled, else
    ``serving.recommender_replicas`` of them."""
    autoscaling = serving.autoscaling
    if autoscaling.enabled:
        target = autoscaling.recommender_target_ongoing_requests
        return {"autoscaling_config": autoscaling.deployment_options(target)}
    return {"num_replicas": serving.recommender_replicas}


def ingress_scaling(serving: ServingConfig) -> dict[str, Any]:
    """The ingress's replicas: autoscaled like the recommender with ``serving.autoscaling`` enabled (to its
    own target), else Serve's default (the serve config's num_replicas)."""
    autoscaling = serving.autoscaling
    if autoscaling.enabled:
        target = autoscaling.ingress_target_ongoing_requests
        return {"autoscaling_config": autoscaling.deployment_options(target)}
    return {}


def compose(
    args: AppArgs, ingress_options: dict[str, Any] | None = None, topology: Topology | None = None
) -> Application:
    """The app of the pipeline config named by ``args`` (validated here, early) in ``topology`` (default:
    its ``serving.topology``): ingress -> recommender (split), or one deployment holding both (colocated).
    ``ingress_options`` are Serve options of the deployment that answers HTTP."""
    config_path = pipeline_config_path(args.config_path)
    serving = load_config(config_path).serving
    options = {**ingress_limits(serving), **ingress_scaling(serving), **(ingress_options or {})}
    feature_store_yaml = optional_path(args.feature_store_yaml)
    if (topology or serving.topology) == "colocated":
        colocated = ColocatedRecommender.options(**{**options, **recommender_scaling(serving)})
        return colocated.bind(str(config_path), serving, args.token_env, feature_store_yaml)
    recommender = RecommenderDeployment.options(**recommender_scaling(serving)).bind(
        str(config_path), feature_store_yaml
    )
    return RecommendIngress.options(**options).bind(recommender, serving, args.token_env)


def build_app(args: AppArgs) -> Application:
    """The application builder Serve calls with the validated ``args`` of the serve config."""
    return compose(args)


def build_noop_app(args: AppArgs, ingress_options: dict[str, Any] | None = None) -> Application:
    """The same ingress in front of a recommender that does nothing: Serve's own overhead, for benchmarks."""
    serving = load_config(pipeline_config_path(args.config_path)).serving
    ingress = RecommendIngress.options(**{**ingress_limits(serving), **(ingress_options or {})})
    return ingress.bind(NoOpRecommender.bind(), serving, args.token_env)

"""The Serve application: ``serving.app:build_app`` (import path of serving/config.yaml).

    serve run serving/config.yaml                     # local Ray, http://127.0.0.1:8000/docs
    SERENDIPITY_CONFIG=/path/pipeline.yaml serve run serving/config.yaml

The same config.yaml is the ``serveConfigV2`` of a KubeRay RayService. The pipeline config comes from
``args.config_path``, else $SERENDIPITY_CONFIG, else configs/demo.yaml of the repository.
No ``from __future__ import annotations``: Serve reads the builder's annotation to validate ``args``.
"""

from typing import Any

from ray.serve import Application

from serendipity.config import load_config
from serving.deployments import NoOpRecommender, RecommenderDeployment, RecommendIngress
from serving.settings import AppArgs, optional_path, pipeline_config_path


def compose(args: AppArgs, ingress_options: dict[str, Any] | None = None) -> Application:
    """Ingress -> recommender, bound with the pipeline config named by ``args`` (validated here, early)."""
    config_path = pipeline_config_path(args.config_path)
    serving = load_config(config_path).serving
    recommender = RecommenderDeployment.bind(str(config_path), optional_path(args.feature_store_yaml))
    ingress = RecommendIngress.options(**ingress_options) if ingress_options else RecommendIngress
    return ingress.bind(recommender, serving, args.token_env)


def build_app(args: AppArgs) -> Application:
    """The application builder Serve calls with the validated ``args`` of the serve config."""
    return compose(args)


def build_noop_app(args: AppArgs, ingress_options: dict[str, Any] | None = None) -> Application:
    """The same ingress in front of a recommender that does nothing: Serve's own overhead, for benchmarks."""
    serving = load_config(pipeline_config_path(args.config_path)).serving
    ingress = RecommendIngress.options(**ingress_options) if ingress_options else RecommendIngress
    return ingress.bind(NoOpRecommender.bind(), serving, args.token_env)

"""Typed pipeline configuration, loaded from one YAML file: one module per section, one import path.

Every user imports from here (``from serendipity.config import PipelineConfig``), never from the
section modules. This package sits at the bottom of the library: it imports no other serendipity
package but ``serendipity.io``, so any layer may import it.
"""

from serendipity.config.eval import EvalConfig, parse_seeds
from serendipity.config.features import EngagementConfig, FeaturesConfig
from serendipity.config.gate import GateConfig
from serendipity.config.inference import InferenceConfig
from serendipity.config.limits import InputLimitsConfig
from serendipity.config.mining import MiningConfig, PriorConfig
from serendipity.config.mllm import MllmConfig
from serendipity.config.pipeline import (
    PATH_FIELDS,
    ConfigError,
    PipelineConfig,
    config_from_dict,
    load_config,
    save_config,
    with_overrides,
)
from serendipity.config.ray import RayConfig
from serendipity.config.retrieval import RetrievalConfig
from serendipity.config.serving import (
    HOST,
    AdmissionConfig,
    AutoscalingConfig,
    ServeHAProxyConfig,
    ServingConfig,
)
from serendipity.config.spark import SparkConfig
from serendipity.config.tree import TreeBuildConfig
from serendipity.config.world import WorldConfig

__all__ = [
    "HOST",
    "PATH_FIELDS",
    "AdmissionConfig",
    "AutoscalingConfig",
    "ConfigError",
    "EngagementConfig",
    "EvalConfig",
    "FeaturesConfig",
    "GateConfig",
    "InferenceConfig",
    "InputLimitsConfig",
    "MiningConfig",
    "MllmConfig",
    "PipelineConfig",
    "PriorConfig",
    "RayConfig",
    "RetrievalConfig",
    "ServeHAProxyConfig",
    "ServingConfig",
    "SparkConfig",
    "TreeBuildConfig",
    "WorldConfig",
    "config_from_dict",
    "load_config",
    "parse_seeds",
    "save_config",
    "with_overrides",
]

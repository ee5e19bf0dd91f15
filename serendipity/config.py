"""Typed pipeline configuration, loaded from one YAML file.

Unknown keys and bad values are errors that name the offending key. Relative paths in the
YAML are resolved against the directory of the YAML file, never the working directory.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from serendipity.io import write_text_atomic
from serendipity.limits import InputLimitsConfig
from serendipity.mllm.gate import GateConfig
from serendipity.ray_local import RayConfig
from serendipity.serving_config import ServingConfig


class ConfigError(ValueError):
    """A configuration file could not be read or holds unknown keys or bad values."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _positive_branching(value: tuple[int, ...]) -> tuple[int, ...]:
    if any(b < 1 for b in value):
        raise ValueError("every branching factor must be >= 1")
    return value


def _distinct_seeds(value: tuple[int, ...]) -> tuple[int, ...]:
    if not value or len(set(value)) != len(value):
        raise ValueError("seeds must be a non-empty list of distinct integers")
    return value


Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Branching = Annotated[tuple[int, int, int, int], AfterValidator(_positive_branching)]  # children per level
Seeds = Annotated[tuple[int, ...], AfterValidator(_distinct_seeds)]


class WorldConfig(_Section):
    """Synthetic short-video world (see ``serendipity.world``)."""

    items: int = Field(2000, ge=10)
    users: int = Field(500, ge=1)
    interactions: int = Field(100_000, ge=1)
    branching: Branching = (3, 3, 3, 2)
    seed: int = 0
    media: Literal["all", "popular", "none"] = "all"
    media_popular_share: Fraction = 0.9  # with media=popular: items covering this impression share
    frame_size: int = Field(32, ge=16, le=256)
    video_frames: int = Field(16, ge=2, le=120)
    video_fps: int = Field(5, ge=1, le=60)
    days: int = Field(30, ge=1)
    media_workers: int = Field(1, ge=1)  # processes rendering and encoding media


class SparkConfig(_Section):
    master: str = "local[*]"
    app_name: str = "serendipity"
    shuffle_partitions: int = Field(8, ge=1)
    driver_memory: str = "4g"
    extra_conf: dict[str, str] = Field(default_factory=dict)


class MiningConfig(_Section):
    """Serendipitous pair mining and curation (the paper's Section 2 and 4.1)."""

    level: int = Field(3, ge=2, le=4)  # L: serendipitous = different at L, same at L-1
    session_gap_minutes: float = Field(30.0, gt=0)
    min_support: int = Field(2, ge=1)
    smoothing: float = Field(2.0, ge=0)  # pseudo-count pulling s(v, c) towards the global mean
    top_k_per_cluster: int = Field(10, ge=1)
    # Time split of the serendipitous pairs: the latest ``validation_fraction`` of them validate (the gate),
    # the ``calibration_fraction`` before those calibrate (the nominator's weight), the earlier ones train.
    validation_fraction: Fraction = 0.2
    calibration_fraction: Fraction = 0.15
    max_holdout_items: int = Field(1000, ge=1)  # context items per held-out split (a hash-ordered sample)
    corpus_coverage: Fraction = 0.8
    split_seed: int = 0


class PriorConfig(_Section):
    """The logged transition prior P(next cluster | context), learnt from the training-period pairs."""

    smoothing: float = Field(1.0, gt=0)  # additive pseudo-count per sibling of P(next | context cluster)
    min_item_transitions: int = Field(3, ge=1)  # an item with this many gets P(next | item), shrunk


class MllmConfig(_Section):
    model_dir: str = "models/mllm"
    prompt_style: Literal["text", "video", "video_text", "video_cot", "thumbnail_cot", "frame_cot"] = (
        "video_cot"
    )
    num_frames: Literal[1, 2, 4, 8] = 4
    image_size: int = Field(32, ge=16, le=1024)
    batch_size: int = Field(32, ge=1)
    max_steps: int = Field(300, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    eval_every: int = Field(25, ge=1)
    num_beams: int = Field(3, ge=1)
    num_workers: int = Field(1, ge=1)  # Ray Train workers (DDP); each trains on its share of batch_size
    use_gpu: bool = False
    gpus_per_worker: float = Field(1.0, gt=0)  # with use_gpu
    cpus_per_worker: float = Field(1.0, ge=0)  # Ray Train's default; less lets workers share cores
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 (or fp16) on GPUs, else fp32
    lora: bool = False
    seed: int = 0
    eval_batch_size: int = Field(16, ge=1)
    curve_items: int = Field(200, ge=1)  # validation items of the periodic evaluation while training
    # A nominator feature from pretrained text knowledge: MiniLM cosine of the item's text and each
    # sibling's description, weighted by a fitted mu (serendipity.nomination.similarity).
    text_similarity: bool = False
    max_failures: int = Field(2, ge=0)  # worker-group restarts (from the last checkpoint) before giving up
    # of the tiny model `serendipity mllm init` builds (serendipity.mllm.tiny.FAMILIES)
    architecture: Literal[
        "llava", "gemma3", "paligemma", "smolvlm", "qwen2_vl", "qwen2_5_vl", "llava_onevision"
    ] = "llava"
    gate: GateConfig = GateConfig()  # when a fine-tuned model is published (serendipity.mllm.gate)


class InferenceConfig(_Section):
    num_actors: int = Field(1, ge=1)
    batch_size: int = Field(16, ge=1)
    num_gpus_per_actor: float | None = Field(None, ge=0)  # None: one per actor when the cluster has GPUs
    decode_concurrency: int = Field(2, ge=1)
    top_k: int = Field(3, ge=1)
    constrained: bool = True
    # Sibling sets up to this size are scored whole (teacher forcing); larger ones use constrained beams.
    score_all_max_siblings: int = Field(64, ge=1)
    restrict_to_siblings: bool = True
    tasks_in_flight_per_actor: int = Field(2, ge=1)  # batches queued per actor: bounds decoded frames held
    audit_log: str | None = None  # when set, each actor appends "item_id<TAB>model_version" per inference
    in_process_below: int = Field(32, ge=0)  # CPU runs with fewer items to infer skip Ray Data's startup


class FeaturesConfig(_Section):
    """Feast: the repository (relative to the project root), an alternative feature_store.yaml, the views."""

    repo_dir: str = "features"
    feature_store_yaml: str | None = None  # e.g. infra/feast/prod/feature_store.yaml; None: the repo's
    history_length: int = Field(20, ge=1)  # engaged item ids in the user_history feature
    serendipity_ttl_days: int = Field(30, ge=1)
    history_ttl_days: int = Field(90, ge=1)
    item_meta_ttl_days: int = Field(365, ge=1)


class EngagementConfig(_Section):
    """What counts as an engaged interaction: in user histories, the retriever's training data, evaluation."""

    satisfaction_above: float = 0.5  # an interaction is engaged when its satisfaction is above this


class RetrievalConfig(_Section):
    """The SASRec sequence model, its point-in-time training data, and the per-cluster item index."""

    embedding_dim: int = Field(64, ge=8)
    max_history: int = Field(20, ge=1)
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(256, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    num_negatives: int = Field(256, ge=1)  # shared uniform negatives of the sampled softmax
    weight_decay: float = Field(0.0, ge=0)
    holdout_fraction: Fraction = 0.2  # the last share of the log's time range, held out for evaluation
    eval_k: int = Field(10, ge=1)
    seed: int = 0
    num_workers: int = Field(1, ge=1)  # Ray Train workers
    use_gpu: bool = False
    flat_index_max_items: int = Field(50_000, ge=1)  # a cluster above this gets an HNSW index
    hnsw_m: int = Field(32, ge=4)


class EvalConfig(_Section):
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


class TreeBuildConfig(_Section):
    """Building a 4-level traffic-balanced tree for datasets without one (``spark_jobs/build_tree.py``)."""

    branching: Branching = (3, 3, 3, 2)
    seed: int = 0
    image_weight: float = Field(0.5, ge=0)  # weight of thumbnail features next to the unit text embedding
    balance_tolerance: float = Field(0.05, ge=0, le=1)  # a child may hold up to (1 + tol) / k of its parent
    refine_iterations: int = Field(5, ge=0)  # balanced k-means rounds after the k-means start
    embed_batch_size: int = Field(64, ge=1)
    embed_threads: int = Field(0, ge=0)  # torch threads per Spark Python worker; 0 leaves torch's default
    terms_per_label: int = Field(1, ge=1, le=3)  # representative terms naming each cluster


class PipelineConfig(_Section):
    """The whole pipeline. ``dataset_dir`` holds the contract tables; ``work_dir`` every output."""

    name: str = "serendipity"
    dataset_dir: Path
    work_dir: Path
    world: WorldConfig | None = None  # when set, the dataset is generated by the synthetic world
    spark: SparkConfig = SparkConfig()
    ray: RayConfig = RayConfig()  # the local Ray of a one-machine run
    mining: MiningConfig = MiningConfig()
    prior: PriorConfig = PriorConfig()
    mllm: MllmConfig = MllmConfig()
    inference: InferenceConfig = InferenceConfig()
    features: FeaturesConfig = FeaturesConfig()
    engagement: EngagementConfig = EngagementConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    serving: ServingConfig = ServingConfig()
    eval: EvalConfig = EvalConfig()
    tree: TreeBuildConfig = TreeBuildConfig()
    limits: InputLimitsConfig = InputLimitsConfig()  # dataset bounds enforced by validation

    @model_validator(mode="after")
    def _paths_absolute(self) -> PipelineConfig:
        for name in ("dataset_dir", "work_dir"):
            if not getattr(self, name).is_absolute():
                raise ValueError(f"{name} must be absolute once loaded; use load_config()")
        return self

    def path(self, *parts: str) -> Path:
        """A path under ``work_dir``."""
        return self.work_dir.joinpath(*parts)

    def resolve(self, relative: str) -> Path:
        """Resolve a path from a section (e.g. ``mllm.model_dir``) against ``work_dir``."""
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else self.work_dir / candidate


def _format_error(error: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<root>"
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)


def config_from_dict(data: dict[str, Any], base_dir: Path, source: str = "<dict>") -> PipelineConfig:
    """Build a config from parsed YAML, resolving relative paths against ``base_dir``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(data).__name__}")
    resolved = dict(data)
    for key in ("dataset_dir", "work_dir"):
        if key in resolved and resolved[key] is not None:
            path = Path(str(resolved[key])).expanduser()
            resolved[key] = path if path.is_absolute() else (base_dir / path).resolve()
    try:
        return PipelineConfig.model_validate(resolved)
    except ValidationError as error:
        raise ConfigError(_format_error(error, source)) from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Load a pipeline config from YAML; ``overrides`` are dotted keys, e.g. ``{"mllm.max_steps": 5}``."""
    path = Path(path).expanduser().resolve()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    _set_dotted(data, overrides or {})
    return config_from_dict(data, path.parent, source=str(path))


def save_config(config: PipelineConfig, path: str | Path) -> Path:
    """Write ``config`` as YAML that ``load_config`` reads back unchanged (absolute paths)."""
    return write_text_atomic(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), path)


def with_overrides(config: PipelineConfig, overrides: dict[str, Any]) -> PipelineConfig:
    """``config`` with dotted keys replaced and validated again; keys whose value is None are left as is."""
    given = {dotted: value for dotted, value in overrides.items() if value is not None}
    data = config.model_dump(mode="json")
    _set_dotted(data, given)
    return config_from_dict(data, config.work_dir, source=f"overrides {sorted(given)}")


def _set_dotted(data: dict[str, Any], overrides: dict[str, Any]) -> None:
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        functools.reduce(lambda node, part: node.setdefault(part, {}), parents, data)[leaf] = value


def parse_seeds(text: str) -> list[int]:
    """Distinct seeds from comma-separated integers, e.g. ``"0,1,2"``; ValueError otherwise."""
    try:
        return list(_distinct_seeds(tuple(int(part) for part in text.split(",") if part.strip())))
    except ValueError:
        raise ValueError(f"expected distinct comma-separated integers, got {text!r}") from None

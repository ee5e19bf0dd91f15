"""The stage table: each pipeline stage, the ``run`` function it calls and the engine that runs it, its
inputs, outputs and config sections.

A stage is a thin call into a job's ``run(config)`` (or a library function), referred to here as the
function itself; the runner is ``serendipity.app.pipeline``. The Spark jobs are the stages on
``Engine.SPARK`` (``spark_job_names``: ``serendipity jobs run`` and the SparkApplications of
``infra/render.py``; ``infra/spark/submit.sh`` accepts the same modules, tested); a job's module path comes
from its function (``job_module``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from ray_jobs import evaluate, finetune, infer, train_retriever
from serendipity.config import PipelineConfig
from serendipity.eval.replay import run_replay
from serendipity.io import write_json_atomic
from serendipity.layout import WorkLayout
from serendipity.schema import CLUSTERS_FILE, DATASET_FILES, INTERACTIONS_FILE, ITEMS_FILE, TREE_INFO_FILE
from spark_jobs import aggregates, build_tree, corpus, curate, pairs, prior, user_history, validate


class Engine(StrEnum):
    """What runs a stage: a Spark session, Ray, or plain Python in the pipeline's process."""

    LOCAL = "local"
    SPARK = "spark"
    RAY = "ray"


@dataclass(frozen=True)
class Stage:
    """One pipeline step: ``run(config)`` must write every path in ``outputs``."""

    name: str
    summary: str
    run: Callable[[PipelineConfig], object]
    inputs: Callable[[PipelineConfig], list[Path]]
    outputs: Callable[[PipelineConfig], list[Path]]
    config_sections: tuple[str, ...] = ()
    enabled: Callable[[PipelineConfig], bool] = field(default=lambda config: True)
    engine: Engine = Engine.LOCAL

    @property
    def job_module(self) -> str:
        """The module of the stage's ``run`` (``spark_jobs.validate``), that spark-submit runs."""
        return self.run.__module__


def _generate_world(config: PipelineConfig) -> None:
    from serendipity.world import generate_world

    assert config.world is not None
    generate_world(config.dataset_dir, config.world)


def _materialize_features(config: PipelineConfig) -> None:
    from datetime import UTC, datetime

    from features.definitions import apply_definitions
    from serendipity.feature_store import ServingFeatures

    features = ServingFeatures(config)
    apply_definitions(features)
    end = datetime.now(UTC)
    features.materialize_incremental(end)
    write_json_atomic({"materialized_until": end.isoformat()}, _layout(config).features_materialized_path)


def _write_report(config: PipelineConfig) -> None:
    from serendipity.eval.report import write_report

    paths = write_report(config, effective_config_path(config))
    print(f"report: {paths.html}")


def placeholder_tree(config: PipelineConfig) -> bool:
    """Whether the dataset came with a placeholder tree, so the build_tree stage builds a real one."""
    marker = config.dataset_dir / TREE_INFO_FILE
    return marker.exists() and bool(json.loads(marker.read_text()).get("placeholder"))


def _dataset_files(config: PipelineConfig) -> list[Path]:
    return [config.dataset_dir / name for name in DATASET_FILES]


def _layout(config: PipelineConfig) -> WorkLayout:
    return WorkLayout.of(config)


def default_stages() -> list[Stage]:
    """The stages in data-flow order."""
    return [
        Stage(
            "world",
            "generate the synthetic short-video world",
            _generate_world,
            inputs=lambda c: [],
            outputs=_dataset_files,
            config_sections=("world",),
            enabled=lambda c: c.world is not None,
        ),
        Stage(
            "validate",
            "check the dataset against the contract; quarantine unusable rows",
            validate.run,
            inputs=_dataset_files,
            outputs=lambda c: [_layout(c).validated_dir / name for name in DATASET_FILES],
            config_sections=("limits",),
            engine=Engine.SPARK,
        ),
        Stage(
            "build_tree",
            "build a 4-level traffic-balanced topic tree (datasets with a placeholder tree)",
            build_tree.run,
            inputs=lambda c: [_layout(c).validated_dir / ITEMS_FILE],
            outputs=lambda c: [_layout(c).tree_dir / CLUSTERS_FILE, _layout(c).tree_dir / ITEMS_FILE],
            config_sections=("tree",),
            enabled=placeholder_tree,
            engine=Engine.SPARK,
        ),
        Stage(
            "aggregates",
            "satisfaction of similar vs serendipitous next items (the paper's preliminary analysis)",
            aggregates.run,
            inputs=lambda c: [_layout(c).validated_dir / INTERACTIONS_FILE],
            outputs=lambda c: [_layout(c).aggregates_overall_path],
            config_sections=("mining",),
            engine=Engine.SPARK,
        ),
        Stage(
            "pairs",
            "serendipitous pairs and s(context item, next cluster)",
            pairs.run,
            inputs=lambda c: [_layout(c).validated_dir / INTERACTIONS_FILE],
            outputs=lambda c: [_layout(c).pairs_path, _layout(c).scores_path],
            config_sections=("mining",),
            engine=Engine.SPARK,
        ),
        Stage(
            "prior",
            "time split of the pairs; logged transition prior P(next cluster | context cluster, item)",
            prior.run,
            inputs=lambda c: [_layout(c).pairs_path],
            outputs=lambda c: [
                _layout(c).cluster_prior_path,
                _layout(c).item_prior_path,
                _layout(c).prior_info_path,
            ],
            config_sections=("mining", "prior"),
            engine=Engine.SPARK,
        ),
        Stage(
            "curate",
            "diversified fine-tuning set (training period) and held-out items (later periods)",
            curate.run,
            inputs=lambda c: [_layout(c).pairs_path, _layout(c).prior_info_path],
            outputs=lambda c: [_layout(c).sft_path, _layout(c).descriptions_path],
            config_sections=("mining",),
            engine=Engine.SPARK,
        ),
        Stage(
            "corpus",
            "popular corpus covering the target impression share, and its delta",
            corpus.run,
            inputs=lambda c: [_layout(c).validated_dir / INTERACTIONS_FILE],
            outputs=lambda c: [_layout(c).corpus_path, _layout(c).corpus_delta_path],
            config_sections=("mining",),
            engine=Engine.SPARK,
        ),
        Stage(
            "user_history",
            "Feast sources: users' recent engaged items and items' cluster path and popularity",
            user_history.run,
            inputs=lambda c: [_layout(c).validated_dir / INTERACTIONS_FILE],
            outputs=lambda c: [_layout(c).user_history_path, _layout(c).item_meta_path],
            config_sections=("features", "engagement"),
            engine=Engine.SPARK,
        ),
        Stage(
            "finetune",
            "fine-tune the multimodal LLM on the curated set (Ray Train)",
            finetune.run,
            inputs=lambda c: [_layout(c).sft_path, _layout(c).descriptions_path, _layout(c).prior_info_path],
            outputs=lambda c: [_layout(c).finetune_summary_path],  # `latest` only when the gate publishes
            config_sections=("mllm", "prior"),
            engine=Engine.RAY,
        ),
        Stage(
            "infer",
            "serendipitous_cluster for the popular corpus (Ray Data), only new or changed items",
            infer.run,
            inputs=lambda c: [
                _layout(c).corpus_path,
                _layout(c).finetune_summary_path,
                _layout(c).prior_info_path,
            ],
            outputs=lambda c: [_layout(c).serendipity_path],
            config_sections=("inference",),
            engine=Engine.RAY,
        ),
        Stage(
            "train_retriever",
            "SASRec sequence model and the per-cluster item index (Ray Train)",
            train_retriever.run,
            inputs=lambda c: [
                _layout(c).validated_dir / INTERACTIONS_FILE,
                _layout(c).catalog_dir() / ITEMS_FILE,
            ],
            outputs=lambda c: [_layout(c).retriever_metrics_path],
            config_sections=("retrieval", "engagement", "mining"),
            engine=Engine.RAY,
        ),
        Stage(
            "materialize",
            "Feast: apply the feature repository, materialize-incremental into the online store",
            _materialize_features,
            inputs=lambda c: [
                _layout(c).serendipity_path,
                _layout(c).user_history_path,
                _layout(c).item_meta_path,
            ],
            outputs=lambda c: [_layout(c).features_materialized_path],
            config_sections=("features",),
        ),
        Stage(
            "evaluate",
            "simulated live experiment: exploitation, exploration, bandit and MLLM arms (Ray)",
            evaluate.run,
            inputs=lambda c: [_layout(c).retriever_metrics_path, _layout(c).features_materialized_path],
            outputs=lambda c: [_layout(c).experiment_path],
            config_sections=("eval",),
            enabled=lambda c: c.world is not None,  # the simulator is the synthetic world's
            engine=Engine.RAY,
        ),
        Stage(
            "replay",
            "offline replay: held-out next items vs the served cluster and the baselines (no simulator)",
            run_replay,
            inputs=lambda c: [_layout(c).serendipity_path, _layout(c).retriever_metrics_path],
            outputs=lambda c: [_layout(c).replay_path],
            config_sections=("engagement", "mining"),
            enabled=lambda c: c.world is None,  # datasets without a simulator
        ),
        Stage(
            "report",
            "the evaluation report: one HTML page and report.json",
            _write_report,
            inputs=lambda c: [
                _layout(c).finetune_curves_path,
                _layout(c).ablation_table_path,
                _layout(c).aggregates_overall_path,
                _layout(c).experiment_path,
                _layout(c).replay_path,
            ],
            outputs=lambda c: [_layout(c).report_html_path, _layout(c).report_json_path],
        ),
    ]


def stages_on(engine: Engine) -> list[Stage]:
    """The stages that ``engine`` runs, in data-flow order."""
    return [stage for stage in default_stages() if stage.engine is engine]


def spark_job_names() -> list[str]:
    """The Spark jobs in data-flow order, each the name of its module ``spark_jobs/<name>.py``."""
    return [stage.job_module.rpartition(".")[2] for stage in stages_on(Engine.SPARK)]


def effective_config_path(config: PipelineConfig) -> Path:
    """Where a pipeline run records the config it ran with (overrides applied), to re-run it."""
    return config.path("_stages", "effective-config.yaml")

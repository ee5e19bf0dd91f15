"""Fine-tuning through Ray Train on the synthetic world's curated set: loss, curves, checkpoints, resume."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from serendipity.config import PipelineConfig
from serendipity.io import write_parquet_atomic
from serendipity.layout import WorkLayout
from serendipity.schema import (
    CLUSTERS_FILE,
    ITEMS_FILE,
    SFT_SCHEMA,
    SPLIT_TRAIN,
    SPLIT_VALIDATION,
    level_column,
)

pytestmark = pytest.mark.slow


def curate_with_pandas(config: PipelineConfig) -> None:
    """Stand-in for the Spark chain (validate -> pairs -> curate) following the SFT_SCHEMA rules.

    Consecutive engagements of a user within the session gap form pairs; a pair is serendipitous when
    the items differ at level L and share level L-1; the top-K context items per next cluster by
    mean satisfaction form the examples, split by context item.
    """
    layout, mining = WorkLayout.of(config), config.mining
    items = pd.read_parquet(config.dataset_dir / ITEMS_FILE)
    log = pd.read_parquet(config.dataset_dir / "interactions.parquet").sort_values(["user_id", "ts"])
    for name in (CLUSTERS_FILE, ITEMS_FILE):
        layout.validated_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(config.dataset_dir / name, layout.validated_dir / name)
    here, parent = level_column(mining.level), level_column(mining.level - 1)
    log = log.join(items.set_index("item_id")[[here, parent]], on="item_id")
    following = log.groupby("user_id").shift(-1)
    gap = (following["ts"] - log["ts"]).dt.total_seconds() / 60
    pairs = pd.DataFrame(
        {
            "context_item_id": log["item_id"],
            "context_cluster": log[here],
            "next_cluster": following[here],
            "satisfaction": following["satisfaction"],
        }
    )[
        (gap <= mining.session_gap_minutes)
        & (following[parent] == log[parent])
        & (following[here] != log[here])
    ]
    pairs["next_cluster"] = pairs["next_cluster"].astype("int64")
    scores = (
        pairs.groupby(["context_item_id", "next_cluster"])["satisfaction"].mean().reset_index(name="score")
    )
    scores = scores.sort_values(["next_cluster", "score", "context_item_id"], ascending=[True, False, True])
    scores["rank"] = scores.groupby("next_cluster").cumcount().astype("int32") + 1
    sft = scores[scores["rank"] <= mining.top_k_per_cluster].rename(
        columns={"next_cluster": "target_cluster"}
    )
    in_validation = np.random.default_rng(mining.split_seed).random(len(items)) < mining.validation_fraction
    validation_ids = set(items["item_id"][in_validation])
    sft["split"] = np.where(sft["context_item_id"].isin(validation_ids), SPLIT_VALIDATION, SPLIT_TRAIN)
    table = pa.Table.from_pandas(sft[SFT_SCHEMA.names], schema=SFT_SCHEMA, preserve_index=False)
    write_parquet_atomic(table, layout.sft_path)


@pytest.fixture(scope="module")
def curated(world_dataset: Path, test_config: PipelineConfig) -> PipelineConfig:
    layout = WorkLayout.of(test_config)
    if not layout.sft_path.exists():
        curate_with_pandas(test_config)
    return test_config


def _isolated(config: PipelineConfig, work_dir: Path, **mllm: object) -> PipelineConfig:
    """The session config with its own work dir holding the curated set (real chain output if present)."""
    shared, own = WorkLayout.of(config), WorkLayout(work_dir)
    if shared.sft_path.exists():
        for source, target in (
            (shared.sft_path.parent, own.sft_path.parent),
            (shared.tree_dir, own.tree_dir),
        ):
            if source.exists():
                shutil.copytree(source, target, dirs_exist_ok=True)
        shutil.copytree(shared.validated_dir, own.validated_dir, dirs_exist_ok=True)
    settings = {"max_steps": 4, "eval_every": 2, "batch_size": 8, "num_beams": 2, **mllm}
    isolated = config.model_copy(
        update={"work_dir": work_dir, "mllm": config.mllm.model_copy(update=settings)}
    )
    if not shared.sft_path.exists():
        curate_with_pandas(isolated)
    return isolated


def _predict_two(config: PipelineConfig) -> list:
    from serendipity.mllm.data import load_validation
    from serendipity.mllm.predictor import predictor_from_config

    _, items, _ = load_validation(config)
    return predictor_from_config(config).predict(items[:2])


def test_finetune_checkpoints_resumes_and_publishes(
    world_dataset: Path, test_config, ray_local, tmp_path
) -> None:
    from serendipity.mllm.finetune import run_finetune
    from serendipity.mllm.model import load_model
    from serendipity.mllm.training import checkpoint_step, latest_checkpoint

    config = _isolated(test_config, tmp_path / "work")
    layout = WorkLayout.of(config)
    first = run_finetune(config)
    steps = [row["step"] for row in first["history"]]
    assert steps == [2, 4]
    assert first["history"][-1]["loss"] < first["history"][0]["loss"]
    assert (layout.finetune_dir / "curves.csv").exists() and (layout.finetune_dir / "curves.png").exists()
    assert len(pd.read_csv(layout.finetune_dir / "curves.csv")) == 2
    assert checkpoint_step(latest_checkpoint(layout.finetune_dir)) == 4
    assert 0.0 <= first["non_llm_baseline"]["recall"] <= 1.0
    assert (layout.models_dir / "latest").read_text() == first["model_version"]

    longer = config.model_copy(update={"mllm": config.mllm.model_copy(update={"max_steps": 6})})
    second = run_finetune(longer)
    assert second["resumed_from_step"] == 4 and second["steps"] == 6
    assert [row["step"] for row in second["history"]] == [2, 4, 6]
    assert (layout.models_dir / "latest").read_text() == second["model_version"] != first["model_version"]
    assert type(load_model(layout.models_dir)[0]).__name__ == "LlavaForConditionalGeneration"
    assert run_finetune(longer)["model_version"] == second["model_version"]  # a re-run publishes nothing new

    tree_siblings = {p.cluster_id for ranked in _predict_two(longer) for p in ranked}
    assert tree_siblings and None not in tree_siblings  # constrained answers always name a cluster


def test_second_architecture_finetunes_and_generates(
    world_dataset: Path, test_config, ray_local, tmp_path
) -> None:
    from serendipity.mllm.finetune import run_finetune
    from serendipity.mllm.model import load_model

    config = _isolated(
        test_config,
        tmp_path / "work",
        architecture="gemma3",
        model_dir="models/gemma3",
        max_steps=2,
        lora=True,
    )
    summary = run_finetune(config)
    assert summary["steps"] == 2 and summary["lora"]
    model, _ = load_model(WorkLayout.of(config).models_dir)
    assert type(model).__name__ == "Gemma3ForConditionalGeneration"
    predictions = _predict_two(config)
    assert len(predictions) == 2 and all(ranked for ranked in predictions)

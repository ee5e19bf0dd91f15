"""A fine-tuning test's own work dir: a copy of the mined chain's curated set, small training settings."""

from __future__ import annotations

import shutil
from pathlib import Path

from serendipity.config import PipelineConfig
from serendipity.layout import WorkLayout


def isolated_finetune_config(config: PipelineConfig, work_dir: Path, **mllm: object) -> PipelineConfig:
    """The chain's config with its own work dir holding a copy of the chain's curated set."""
    shared, own = WorkLayout.of(config), WorkLayout(work_dir)
    for source, target in (
        (shared.sft_path.parent, own.sft_path.parent),
        (shared.prior_dir, own.prior_dir),
        (shared.pairs_path.parent, own.pairs_path.parent),
        (shared.tree_dir, own.tree_dir),
        (shared.corpus_path.parent, own.corpus_path.parent),
    ):
        if source.exists():
            shutil.copytree(source, target, dirs_exist_ok=True)
    shutil.copytree(shared.validated_dir, own.validated_dir, dirs_exist_ok=True)
    settings = {"max_steps": 4, "eval_every": 2, "batch_size": 8, "num_beams": 2, **mllm}
    return config.model_copy(update={"work_dir": work_dir, "mllm": config.mllm.model_copy(update=settings)})

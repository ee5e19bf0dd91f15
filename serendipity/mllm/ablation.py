"""The paper's offline experiments: prompt styles, frame counts and thumbnails compared by fine-tuning.

Every arm (prompt style x number of frames) and seed is a fine-tune (``run_finetune``) of the same
freshly initialised tiny base model of that seed, in its own work directory under
``reports/ablation/<arm>/seed<k>``, which gets the main pipeline's catalogue and curated set (copied as
single files) and mined pairs (symlinked), so each arm reads them through an ordinary ``WorkLayout``.
Arms shared by several experiments (video CoT with 4 frames) are trained once.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from serendipity.config import PipelineConfig
from serendipity.io import write_json_atomic
from serendipity.layout import WorkLayout
from serendipity.mllm.ablation_report import AblationReport, build_report
from serendipity.mllm.model import MODEL_CONFIG_FILE
from serendipity.mllm.prompts import PromptStyle
from serendipity.mllm.results import FinetuneSummary
from serendipity.schema import CLUSTERS_FILE, ITEMS_FILE

BASE_MODELS_DIR = "base"
ARM_SETTINGS_FILE = "ablation_arm.json"
log = logging.getLogger(__name__)


class AblationError(RuntimeError):
    """The ablation cannot run: missing upstream tables or a bad experiment selection."""


@dataclass(frozen=True)
class Arm:
    """One prompt setting: a prompt style and, for the uniformly sampled video styles, a frame count."""

    style: PromptStyle
    num_frames: int = 4

    @property
    def name(self) -> str:
        if self.style in (PromptStyle.VIDEO, PromptStyle.VIDEO_TEXT, PromptStyle.VIDEO_COT):
            return f"{self.style.value}-{self.num_frames}f"
        return self.style.value


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    arms: tuple[Arm, ...]


def paper_experiments() -> dict[str, Experiment]:
    """The three offline studies of the paper (its Figures 3, 4 and 5)."""
    return {
        "modality": Experiment(
            "modality",
            "text only vs video only vs video + text (direct) vs video CoT, 4 frames",
            tuple(Arm(PromptStyle(s)) for s in ("text", "video", "video_text", "video_cot")),
        ),
        "frames": Experiment(
            "frames",
            "number of uniformly sampled frames, video CoT",
            tuple(Arm(PromptStyle.VIDEO_COT, n) for n in (1, 2, 4, 8)),
        ),
        "thumbnail": Experiment(
            "thumbnail",
            "thumbnail vs one random frame, CoT",
            (Arm(PromptStyle.THUMBNAIL_COT), Arm(PromptStyle.FRAME_COT)),
        ),
    }


def select_experiments(names: Sequence[str]) -> list[Experiment]:
    known = paper_experiments()
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise AblationError(f"unknown experiment(s) {unknown or names!r}; choose from {sorted(known)}")
    return [known[name] for name in names]


def ablation_dir(config: PipelineConfig) -> Path:
    return WorkLayout.of(config).ablation_dir


def shared_tables(main: WorkLayout, arm: WorkLayout) -> list[tuple[Path, Path]]:
    """(main, arm) paths of the tables fine-tuning reads: the catalogue (built tree or validated) and the
    curated set. The arm's catalogue always sits in its validated/, so it never depends on a tree/ link."""
    catalog = main.catalog_dir()
    return [
        (catalog / CLUSTERS_FILE, arm.validated_dir / CLUSTERS_FILE),
        (catalog / ITEMS_FILE, arm.validated_dir / ITEMS_FILE),
        (main.sft_path, arm.sft_path),
        (main.descriptions_path, arm.descriptions_path),
        (main.cluster_prior_path, arm.cluster_prior_path),
        (main.item_prior_path, arm.item_prior_path),
    ]


def require_curated(config: PipelineConfig, config_path: str | Path | None = None) -> None:
    layout = WorkLayout.of(config)
    if not layout.sft_path.exists():
        how = f"--config {config_path}" if config_path else "--config PIPELINE.yaml"
        raise AblationError(
            f"{layout.sft_path} is missing: the ablation fine-tunes on the curated set; run the Spark chain "
            f"first: serendipity pipeline run {how} --stages validate,aggregates,pairs,curate"
        )


def share_inputs(main: WorkLayout, arm: WorkLayout) -> None:
    """Give the arm's work_dir the main pipeline's inputs: the mined pairs/ by a symlink; the catalogue
    and curated tables as single Parquet files (Spark writes them as directories, which the fine-tuning
    readers' schema checks do not open)."""
    import pyarrow.parquet as pq

    from serendipity.io import write_parquet_atomic, write_text_atomic

    for source, target in shared_tables(main, arm):
        if source.exists():
            write_parquet_atomic(pq.read_table(source), target)
    if main.prior_info_path.is_file():
        write_text_atomic(main.prior_info_path.read_text(), arm.prior_info_path)
    pairs, link = main.pairs_path.parent, arm.pairs_path.parent
    if link.is_symlink() and link.resolve() == pairs.resolve():
        return
    if link.is_symlink():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    if pairs.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(pairs.resolve(), target_is_directory=True)


def base_model(config: PipelineConfig, seed: int) -> Path:
    """The freshly initialised tiny base model of ``seed``, shared by every arm of that seed."""
    from serendipity.mllm.tiny import init_tiny_model

    path = ablation_dir(config) / BASE_MODELS_DIR / f"seed{seed}"
    if not (path / MODEL_CONFIG_FILE).exists():
        init_tiny_model(
            path,
            WorkLayout.of(config).catalog_dir(),
            architecture=config.mllm.architecture,
            image_size=config.mllm.image_size,
            seed=seed,
        )
    return path


def arm_config(
    config: PipelineConfig, arm: Arm, seed: int, base: Path, max_steps: int, eval_every: int
) -> PipelineConfig:
    """The main config with the arm's prompt setting, seed and base model, working in its own directory."""
    mllm = config.mllm.model_copy(
        update={
            "prompt_style": arm.style.value,
            "num_frames": arm.num_frames,
            "seed": seed,
            "model_dir": str(base),
            "max_steps": max_steps,
            "eval_every": eval_every,
        }
    )
    work_dir = ablation_dir(config) / arm.name / f"seed{seed}"
    return config.model_copy(update={"work_dir": work_dir, "mllm": mllm})


def _settings(config: PipelineConfig, arm_cfg: PipelineConfig) -> dict[str, Any]:
    """What an arm's result depends on: a change in any of these retrains the arm from scratch."""
    sft = WorkLayout.of(config).sft_path.stat()
    base = (Path(arm_cfg.mllm.model_dir) / MODEL_CONFIG_FILE).stat()
    return {
        "mllm": arm_cfg.mllm.model_dump(mode="json"),
        "level": config.mining.level,
        "sft": [sft.st_size, sft.st_mtime_ns],
        "base_model_mtime_ns": base.st_mtime_ns,
    }


def run_arm(config: PipelineConfig, arm: Arm, seed: int, max_steps: int, eval_every: int) -> FinetuneSummary:
    """Fine-tune one arm x seed; a finished arm with unchanged settings is reused, a killed one resumes."""
    from serendipity.mllm.finetune import run_finetune

    base = base_model(config, seed)
    arm_cfg = arm_config(config, arm, seed, base, max_steps, eval_every)
    arm_layout = WorkLayout.of(arm_cfg)
    share_inputs(WorkLayout.of(config), arm_layout)
    settings_path = arm_layout.work_dir / ARM_SETTINGS_FILE
    settings = _settings(config, arm_cfg)
    fresh = not settings_path.exists() or json.loads(settings_path.read_text()) != settings
    if fresh:
        shutil.rmtree(arm_layout.finetune_dir, ignore_errors=True)
        shutil.rmtree(arm_layout.models_dir, ignore_errors=True)
    write_json_atomic(settings, settings_path)
    return run_finetune(arm_cfg, fresh=fresh)


def _history_frame(summary: FinetuneSummary, arm: Arm, seed: int) -> pd.DataFrame:
    frame = pd.DataFrame(summary.history)
    frame.insert(0, "seed", seed)
    frame.insert(0, "arm", arm.name)
    return frame


def ablation_command(
    config_path: str | Path | None,
    experiments: Sequence[Experiment],
    seeds: Sequence[int],
    steps: int,
    every: int,
) -> str:
    """The command line that reruns this ablation (the provenance the report shows)."""
    seed_list, names = ",".join(map(str, seeds)), ",".join(e.name for e in experiments)
    return (
        f"serendipity experiment ablate --config {config_path or 'CONFIG'} --seeds {seed_list} "
        f"--max-steps {steps} --eval-every {every} --experiments {names}"
    )


def run_ablation(
    config: PipelineConfig,
    *,
    experiments: Sequence[Experiment],
    seeds: Sequence[int] = (0,),
    max_steps: int | None = None,
    eval_every: int | None = None,
    on_arm_done: Callable[[str, int, FinetuneSummary], None] | None = None,
    config_path: str | Path | None = None,
) -> AblationReport:
    """Run every arm x seed (sequentially, in the current Ray session) and write the report files."""
    require_curated(config, config_path)
    if not seeds:
        raise AblationError("give at least one seed")
    steps = max_steps or config.mllm.max_steps
    every = min(eval_every or config.mllm.eval_every, steps)
    arms = list({arm.name: arm for experiment in experiments for arm in experiment.arms}.values())
    histories: list[pd.DataFrame] = []
    baseline: dict[str, Any] = {}
    for arm in arms:
        for seed in seeds:
            log.info("ablation arm %s seed %d: %d steps, evaluated every %d", arm.name, seed, steps, every)
            summary = run_arm(config, arm, seed, steps, every)
            histories.append(_history_frame(summary, arm, seed))
            if summary.non_llm_baseline is not None:  # the same data for every arm
                baseline = summary.non_llm_baseline.to_json()
            if on_arm_done is not None:
                on_arm_done(arm.name, seed, summary)
    return build_report(
        ablation_dir(config),
        experiments=[(e.name, e.title, [a.name for a in e.arms]) for e in experiments],
        histories=pd.concat(histories, ignore_index=True),
        baseline=baseline,
        settings={
            "seeds": list(seeds),
            "max_steps": steps,
            "eval_every": every,
            "work_dir": str(config.work_dir),
            "command": ablation_command(config_path, experiments, seeds, steps, every),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )

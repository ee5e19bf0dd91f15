"""Driver side of fine-tuning: base model, Ray Train TorchTrainer, resume, the publish gate, publish."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from serendipity.config import MllmConfig, PipelineConfig
from serendipity.layout import LATEST_MODEL_POINTER, WorkLayout
from serendipity.mllm.checkpoints import (
    checkpoint_history,
    checkpoint_step,
    latest_checkpoint,
    merged_model_from_checkpoint,
)
from serendipity.mllm.gate import (
    ALREADY_PUBLISHED,
    GUESS_REFERENCE,
    NON_LLM_GUESS_VERSION,
    PRIOR_REFERENCE,
    PUBLISH,
    PUBLISHED_REFERENCE,
    TRANSITION_PRIOR_VERSION,
    ServedChoice,
)
from serendipity.mllm.judge import Judged, feature_version, judge, served_nominator
from serendipity.mllm.model import ModelMetadata, model_metadata, publish_model, resolve_model_dir
from serendipity.mllm.results import FinetuneSummary, GateDecision, Validation
from serendipity.mllm.training import finetune_worker
from serendipity.nomination.combine import PRIOR_ALONE
from serendipity.ray_local import init_local_ray
from serendipity.schema import CLUSTERS_FILE

RUN_NAME = "ray_train"
log = logging.getLogger(__name__)


def ensure_base_model(config: PipelineConfig) -> Path:
    """The base model directory; the tiny default is built there first when it does not exist yet."""
    from serendipity.mllm.tiny import init_tiny_model

    base = resolve_model_dir(config.resolve(config.mllm.model_dir))
    if not base.exists():
        catalog = WorkLayout.of(config).catalog_dir()
        source = catalog if (catalog / CLUSTERS_FILE).exists() else config.dataset_dir
        log.info("building the tiny %s model at %s", config.mllm.architecture, base)
        init_tiny_model(
            base,
            source,
            architecture=config.mllm.architecture,
            image_size=config.mllm.image_size,
            seed=config.mllm.seed,
        )
    if model_metadata(base).tiny_random:
        warn_tiny_model(base)
    return base


def warn_tiny_model(base: Path) -> None:
    """Say loudly that the base model is the tiny randomly initialised one (no ``mllm.model_dir`` given)."""
    message = (
        f"fine-tuning the TINY RANDOMLY INITIALISED test model at {base}: mllm.model_dir names no existing "
        "model, so one was built from the dataset's texts. Its nominations are only as good as a few "
        "hundred steps from random weights; for a real run set mllm.model_dir to a downloaded checkpoint "
        "(README: Bring a real VLM)."
    )
    log.warning(message)
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


def _run_trainer(config: PipelineConfig, base: Path, resume_from: Path | None) -> None:
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from serendipity.logs import ray_train_log_level

    trainer = TorchTrainer(
        finetune_worker,
        train_loop_config={
            "config": config.model_dump(mode="json"),
            "base_model_dir": str(base),
            "resume_from": str(resume_from) if resume_from else None,
        },
        scaling_config=ScalingConfig(
            num_workers=config.mllm.num_workers,
            use_gpu=config.mllm.use_gpu,
            resources_per_worker=_worker_resources(config.mllm),
            placement_strategy=config.ray.train_placement,
        ),
        run_config=RunConfig(
            storage_path=str(WorkLayout.of(config).finetune_dir),
            name=RUN_NAME,
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=config.mllm.max_failures),
            logging_config=LoggingConfig(log_level=ray_train_log_level()),
        ),
    )
    trainer.fit()


def _worker_resources(settings: MllmConfig) -> dict[str, float]:
    """What each Ray Train worker reserves: its CPUs, and its GPUs when training on GPUs."""
    resources = {"CPU": settings.cpus_per_worker}
    if settings.use_gpu:
        resources["GPU"] = settings.gpus_per_worker
    return resources


def _published_from(models_dir: Path, metadata: dict[str, Any]) -> Path | None:
    """The latest published model when it already holds this checkpoint (re-runs publish nothing new)."""
    if not (models_dir / LATEST_MODEL_POINTER).is_file():
        return None
    latest = resolve_model_dir(models_dir)
    recorded = model_metadata(latest).to_json()
    expected = json.loads(json.dumps(metadata, default=str))
    if recorded and {key: recorded.get(key) for key in expected} == expected:
        return latest
    return None


def _current_model(models_dir: Path) -> Path | None:
    """The published model (``latest``), if any."""
    return resolve_model_dir(models_dir) if (models_dir / LATEST_MODEL_POINTER).is_file() else None


def _served(
    decision: str, gate: GateDecision, candidate_dir: Path | None, judged: Judged, current: Path | None
) -> ServedChoice:
    """What inference serves: the candidate when published, else the gate's best reference."""
    if decision in (PUBLISH, ALREADY_PUBLISHED) and candidate_dir is not None:
        return ServedChoice("model", candidate_dir.name, judged.weight, judged.text_weight)
    best = gate.best_reference
    if best == PUBLISHED_REFERENCE and current is not None:
        recorded = model_metadata(current)
        weights = recorded.prior_weight or 0.0, recorded.text_weight or 0.0
        return ServedChoice("model", current.name, *weights)
    if best == PRIOR_REFERENCE:
        return ServedChoice("transition_prior", TRANSITION_PRIOR_VERSION, PRIOR_ALONE)
    return ServedChoice("non_llm_guess", NON_LLM_GUESS_VERSION, 0.0)


def run_finetune(config: PipelineConfig, *, fresh: bool = False) -> FinetuneSummary:
    """Fine-tune (resuming from the last checkpoint unless ``fresh``), fit the nominator's prior weight on
    the calibration split, gate on the validation split, publish, write a summary.

    The model is published as ``latest`` only when the publish gate (``serendipity.mllm.gate``) lets it;
    the summary's ``served`` names what inference serves.
    """
    layout = WorkLayout.of(config)
    run_dir = layout.finetune_dir / RUN_NAME
    if fresh:
        shutil.rmtree(run_dir, ignore_errors=True)
    base = ensure_base_model(config)
    resume_from = latest_checkpoint(run_dir) if run_dir.exists() else None
    start_step = checkpoint_step(resume_from) if resume_from else 0
    if start_step < config.mllm.max_steps:
        init_local_ray(config.ray)
        _run_trainer(config, base, resume_from)
    final = latest_checkpoint(run_dir)
    if final is None:
        raise RuntimeError(f"fine-tuning wrote no checkpoint under {run_dir}")
    history = checkpoint_history(final)
    metadata = {
        "base_model_dir": str(base),
        "steps": checkpoint_step(final),
        "prompt_style": config.mllm.prompt_style,
        "num_frames": config.mllm.num_frames,
        "level": config.mining.level,
        "lora": config.mllm.lora,
        "final_metrics": history[-1] if history else {},
        "checkpoint": str(final),
    }
    already = _published_from(layout.models_dir, metadata)
    model, processor = merged_model_from_checkpoint(final, config.mllm.lora)
    current = _current_model(layout.models_dir) if already is None else None
    judged = judge(config, model, processor, current)
    gate = judged.gate
    decision = ALREADY_PUBLISHED if already is not None and gate.decision == PUBLISH else gate.decision
    assert decision is not None
    candidate_dir = already
    if decision == PUBLISH:
        published = {
            **metadata,
            "prior_weight": judged.weight,
            "text_weight": judged.text_weight,
            "prior_snapshot": judged.prior.snapshot,
        }
        candidate_dir = publish_model(
            model, processor, layout.models_dir, ModelMetadata.model_validate(published)
        )
    served = _served(decision, gate, candidate_dir, judged, current)
    gate = gate.model_copy(update={"decision": decision, "served_model_version": served.model_version})
    summary = FinetuneSummary(
        **metadata,
        resumed_from_step=start_step,
        model_dir=str(candidate_dir or current) if (candidate_dir or current) else None,
        model_version=served.model_version,
        served=served,
        feature_version=feature_version(served, judged.prior),
        served_metrics=judged.nominators[served_nominator(served, gate)],
        non_llm_baseline=judged.nominators[GUESS_REFERENCE],
        prior=asdict(judged.prior),
        prior_weight=judged.weight,
        text_weight=judged.text_weight,
        calibration=judged.calibration,
        validation=Validation(nominators=judged.nominators, by_evidence=judged.by_evidence),
        gate=gate,
        history=history,
    )
    summary.write(layout.finetune_summary_path)
    log.info(
        "fine-tuned %s steps; validation n=%d: candidate (lambda %.3g) recall %.3f, prior alone %.3f, "
        "guess %.3f; gate: %s, serving %s",
        summary.steps,
        gate.n,
        judged.weight,
        gate.candidate.recall if gate.candidate else float("nan"),
        judged.nominators[PRIOR_REFERENCE].recall,
        judged.nominators[GUESS_REFERENCE].recall,
        decision,
        served.model_version,
    )
    return summary

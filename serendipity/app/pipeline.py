"""The pipeline: an ordered list of stages, each a thin call into a job, skipped when current.

A stage is *current* when its outputs exist and the fingerprint recorded for its last
successful run (taken just before it ran) still matches: the config sections it reads plus the
size and mtime of its inputs. Changing the config or re-running an upstream stage therefore
re-runs it. The stages themselves are listed in ``serendipity.app.stages``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from serendipity.app.stages import Engine, Stage, default_stages, effective_config_path
from serendipity.config import PipelineConfig, save_config
from serendipity.io import write_json_atomic
from serendipity.logs import STAGE_LOGGER, stage_events
from serendipity.worklock import work_dir_lock

__all__ = [
    "Engine",
    "Stage",
    "StageResult",
    "UnknownStageError",
    "default_stages",
    "is_current",
    "run_pipeline",
]


log = logging.getLogger(STAGE_LOGGER)


class UnknownStageError(ValueError):
    """A stage name that is not in the stage table."""


def _fingerprint(stage: Stage, config: PipelineConfig) -> str:
    digest = hashlib.sha256()
    for section in stage.config_sections:
        value = getattr(config, section)
        digest.update(
            json.dumps(None if value is None else value.model_dump(mode="json"), sort_keys=True).encode()
        )
    for path in stage.inputs(config):
        stat = path.stat() if path.exists() else None
        digest.update(f"{path}:{stat.st_size if stat else -1}:{stat.st_mtime_ns if stat else -1}".encode())
    return digest.hexdigest()


def _marker(config: PipelineConfig, stage: Stage) -> Path:
    return config.path("_stages", f"{stage.name}.json")


def is_current(stage: Stage, config: PipelineConfig) -> bool:
    marker = _marker(config, stage)
    if not marker.exists() or not all(path.exists() for path in stage.outputs(config)):
        return False
    return json.loads(marker.read_text()).get("fingerprint") == _fingerprint(stage, config)


@dataclass
class StageResult:
    name: str
    status: str  # "ran" | "skipped" | "disabled"
    seconds: float = 0.0


def select_stages(names: Sequence[str] | None = None) -> list[Stage]:
    """The stages named (all when ``names`` is empty or None), in data-flow order."""
    available = default_stages()
    known = [stage.name for stage in available]
    unknown = sorted(set(names or []) - set(known))
    if unknown:
        raise UnknownStageError(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return [stage for stage in available if not names or stage.name in names]


def run_pipeline(
    config: PipelineConfig,
    stages: Sequence[str] | None = None,
    force: bool = False,
    on_stage: Callable[[Stage], None] | None = None,
) -> list[StageResult]:
    """Run the selected stages (all by default) in order, skipping current ones unless ``force``."""
    from spark_jobs.common import SparkScope

    selected = select_stages(stages)
    with work_dir_lock(config.work_dir, f"pipeline run of {config.name!r}"):
        save_config(config, effective_config_path(config))
        results = []
        spark_scope = SparkScope()  # the JVM's memory goes back before the Ray stages
        for stage in selected:
            if not stage.enabled(config):
                results.append(StageResult(stage.name, "disabled"))
                log.info("stage disabled", extra={"stage": stage.name})
                continue
            if not force and is_current(stage, config):
                results.append(StageResult(stage.name, "skipped"))
                log.info("stage skipped: outputs current", extra={"stage": stage.name})
                continue
            if on_stage is not None:
                on_stage(stage)
            spark_scope.before_stage(stage.engine is Engine.SPARK)
            fingerprint = _fingerprint(stage, config)  # before: an input rewritten meanwhile is not current
            started = time.perf_counter()
            with stage_events(stage.name) as event:
                event.record(stage.run(config))
                missing = [str(path) for path in stage.outputs(config) if not path.exists()]
                if missing:
                    raise RuntimeError(f"stage {stage.name} finished without writing {', '.join(missing)}")
            seconds = time.perf_counter() - started
            record = {"fingerprint": fingerprint, "finished": time.time(), "seconds": seconds}
            write_json_atomic(record, _marker(config, stage))
            results.append(StageResult(stage.name, "ran", seconds))
        spark_scope.close()
    return results

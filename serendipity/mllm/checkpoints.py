"""Fine-tuning checkpoints without pickle, and resuming only from complete ones.

A checkpoint directory holds ``model/`` (``save_pretrained`` of the model or LoRA adapter, safetensors,
and the processor), ``optimizer.pt`` (the optimizer's state dict: tensors and plain values, read back with
``torch.load(..., weights_only=True)``), ``history.json`` and, written last, the marker
``serendipity_checkpoint.json`` (step, base model and the size of every other file). A checkpoint is
complete when its marker parses and every file it lists has its listed size, so one half-copied into
Ray Train's storage, or cut short by a crash, is skipped with a warning.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from serendipity.mllm.model import load_model

CHECKPOINT_MODEL = "model"
CHECKPOINT_OPTIMIZER = "optimizer.pt"
CHECKPOINT_HISTORY = "history.json"
CHECKPOINT_INFO = "serendipity_checkpoint.json"
RAY_CHECKPOINT_PREFIX = "checkpoint_"  # how Ray Train names the checkpoint directories it stores

log = logging.getLogger(__name__)


def save_checkpoint(
    directory: Path,
    model: Any,
    processor: Any,
    optimizer: Any,
    step: int,
    history: list[dict[str, float]],
    base_model_dir: str,
) -> None:
    """Write a checkpoint into ``directory``; the marker listing every file comes last."""
    import torch

    model.save_pretrained(directory / CHECKPOINT_MODEL, safe_serialization=True)
    processor.save_pretrained(directory / CHECKPOINT_MODEL)
    torch.save(optimizer.state_dict(), directory / CHECKPOINT_OPTIMIZER)
    (directory / CHECKPOINT_HISTORY).write_text(json.dumps(history))
    files = {
        path.relative_to(directory).as_posix(): path.stat().st_size
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != CHECKPOINT_INFO
    }
    info = {"step": step, "base_model_dir": base_model_dir, "files": files}
    (directory / CHECKPOINT_INFO).write_text(json.dumps(info))


def _info(checkpoint_dir: str | Path) -> dict[str, Any]:
    return dict(json.loads((Path(checkpoint_dir) / CHECKPOINT_INFO).read_text()))


def incomplete_reason(checkpoint_dir: str | Path) -> str | None:
    """Why ``checkpoint_dir`` is not a complete checkpoint, or None when it is."""
    directory = Path(checkpoint_dir)
    if not (directory / CHECKPOINT_INFO).is_file():
        return f"no {CHECKPOINT_INFO} (written last)"
    try:
        info = _info(directory)
        files, _ = dict(info["files"]), int(info["step"])
    except (ValueError, KeyError, TypeError):
        return f"{CHECKPOINT_INFO} is unreadable or lists no files"
    for name, size in files.items():
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, {size} expected"
    return None


def checkpoint_step(checkpoint_dir: str | Path) -> int:
    return int(_info(checkpoint_dir)["step"])


def latest_checkpoint(root: str | Path) -> Path | None:
    """The complete checkpoint with the highest step anywhere under ``root`` (Ray Train's storage path).

    Incomplete ones (a marker, or a Ray checkpoint directory, without every file) are skipped with a warning.
    """
    root = Path(root)
    candidates = {info.parent for info in root.glob(f"**/{CHECKPOINT_INFO}")}
    candidates |= {path for path in root.glob(f"**/{RAY_CHECKPOINT_PREFIX}*") if path.is_dir()}
    complete = []
    for directory in sorted(candidates):
        if (reason := incomplete_reason(directory)) is None:
            complete.append(directory)
        else:
            log.warning("skipping incomplete checkpoint %s: %s", directory, reason)
    return max(complete, key=checkpoint_step) if complete else None


def checkpoint_history(checkpoint_dir: str | Path) -> list[dict[str, float]]:
    return list(json.loads((Path(checkpoint_dir) / CHECKPOINT_HISTORY).read_text()))


def optimizer_state(checkpoint_dir: str | Path) -> dict[str, Any]:
    """The optimizer's state dict, read without unpickling arbitrary objects."""
    import torch

    path = Path(checkpoint_dir) / CHECKPOINT_OPTIMIZER
    return dict(torch.load(path, map_location="cpu", weights_only=True))


def merged_model_from_checkpoint(checkpoint_dir: str | Path, lora: bool) -> tuple[Any, Any]:
    """The trained model of a checkpoint as a plain HF model (LoRA adapters merged into the base)."""
    checkpoint_dir = Path(checkpoint_dir)
    if not lora:
        return load_model(checkpoint_dir / CHECKPOINT_MODEL)
    from peft import PeftModel

    model, processor = load_model(_info(checkpoint_dir)["base_model_dir"])
    model = PeftModel.from_pretrained(model, checkpoint_dir / CHECKPOINT_MODEL).merge_and_unload()
    return model, processor

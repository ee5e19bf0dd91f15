"""Fine-tuning checkpoints: no pickle, and resuming only from a complete one."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from serendipity.mllm.checkpoints import (
    CHECKPOINT_INFO,
    CHECKPOINT_MODEL,
    CHECKPOINT_OPTIMIZER,
    checkpoint_history,
    checkpoint_step,
    incomplete_reason,
    latest_checkpoint,
    merged_model_from_checkpoint,
    optimizer_state,
    save_checkpoint,
)
from serendipity.mllm.tiny import build_tiny_model, dataset_texts

HISTORY = [{"step": 2, "loss": 1.5, "recall": 0.25}]


@pytest.fixture(scope="module")
def trained(world_dataset: Path) -> tuple[Any, Any, torch.optim.Optimizer]:
    model, processor = build_tiny_model(dataset_texts(world_dataset))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    parameters = [p for p in model.parameters() if p.requires_grad]
    sum(p.float().square().sum() for p in parameters[:3]).backward()
    optimizer.step()
    return model, processor, optimizer


def _save(trained: tuple[Any, Any, Any], directory: Path, step: int) -> Path:
    model, processor, optimizer = trained
    directory.mkdir(parents=True)
    save_checkpoint(directory, model, processor, optimizer, step, HISTORY, "base/model")
    return directory


def test_checkpoint_holds_no_pickle_and_round_trips(trained: tuple[Any, Any, Any], tmp_path: Path) -> None:
    directory = _save(trained, tmp_path / "checkpoint_000000", step=2)
    assert incomplete_reason(directory) is None
    assert checkpoint_step(directory) == 2 and checkpoint_history(directory) == HISTORY
    assert list((directory / CHECKPOINT_MODEL).glob("*.safetensors"))
    assert not list(directory.rglob("*.bin")) and not list(directory.rglob("*.pkl"))
    state = optimizer_state(directory)  # torch.load(weights_only=True): no arbitrary objects
    fresh = torch.optim.AdamW(trained[0].parameters(), lr=1e-3)
    fresh.load_state_dict(state)
    original = trained[2].state_dict()["state"]
    for key, value in fresh.state_dict()["state"].items():
        torch.testing.assert_close(value["exp_avg"], original[key]["exp_avg"])
    model, _ = merged_model_from_checkpoint(directory, lora=False)
    saved = trained[0].state_dict()
    for name, loaded in model.state_dict().items():
        torch.testing.assert_close(loaded, saved[name], msg=name)


def test_half_copied_checkpoints_are_skipped_with_a_warning(
    trained: tuple[Any, Any, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "ray_train"
    complete = _save(trained, root / "checkpoint_000000", step=2)
    truncated = Path(shutil.copytree(complete, root / "checkpoint_000001"))
    info = json.loads((truncated / CHECKPOINT_INFO).read_text())
    (truncated / CHECKPOINT_INFO).write_text(json.dumps({**info, "step": 4}))
    weights = next((truncated / CHECKPOINT_MODEL).glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    missing = Path(shutil.copytree(complete, root / "checkpoint_000002"))
    (missing / CHECKPOINT_INFO).write_text(json.dumps({**info, "step": 6}))
    (missing / CHECKPOINT_OPTIMIZER).unlink()
    unmarked = Path(shutil.copytree(complete, root / "checkpoint_000003"))
    (unmarked / CHECKPOINT_INFO).unlink()
    garbled = Path(shutil.copytree(complete, root / "checkpoint_000004"))
    (garbled / CHECKPOINT_INFO).write_text('{"step": 10, "fi')

    with caplog.at_level(logging.WARNING, logger="serendipity.mllm.checkpoints"):
        assert latest_checkpoint(root) == complete
    skipped = {record.getMessage().split(":")[0].split()[-1] for record in caplog.records}
    assert skipped == {str(d) for d in (truncated, missing, unmarked, garbled)}
    messages = "\n".join(record.getMessage() for record in caplog.records)
    assert weights.name in messages and CHECKPOINT_OPTIMIZER in messages
    assert latest_checkpoint(tmp_path / "empty") is None

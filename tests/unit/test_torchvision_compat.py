"""torchvision on the CPU set-up: it imports, its tensor transforms work, its C++ ops fail loudly."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import torch

from serendipity.mllm.torchvision_compat import (
    ensure_torchvision_importable,
    install_import_hook,
    torchvision_problem,
)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torchvision") is None, reason="torchvision is not installed"
)
CPU_ONLY = torch.version.cuda is None and getattr(torch.version, "hip", None) is None


def test_torchvision_imports_and_resizes() -> None:
    assert torchvision_problem() is None
    from torchvision.transforms.v2 import functional

    frames = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    resized = functional.resize(frames, [4, 6], antialias=True)
    assert resized.shape == (2, 3, 4, 6)
    assert resized.min() >= frames.min() and resized.max() <= frames.max()


def test_shim_and_hook_are_idempotent() -> None:
    first = ensure_torchvision_importable()
    assert ensure_torchvision_importable() == first
    install_import_hook()
    install_import_hook()
    hooks = [f for f in sys.meta_path if type(f).__name__ == "_BeforeTorchvision"]
    assert len(hooks) <= 1


@pytest.mark.skipif(not CPU_ONLY, reason="a CUDA/ROCm torch loads torchvision's C++ ops")
def test_cpp_ops_fail_loudly_on_cpu_only_torch() -> None:
    import torchvision
    from torchvision.extension import _has_ops

    if _has_ops():
        pytest.skip("this torchvision is a CPU build: its C++ ops load")
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    with pytest.raises(RuntimeError, match="Couldn't load custom C\\+\\+ ops"):
        torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8]), 0.5)
    with pytest.raises(NotImplementedError, match="torchvision::nms"):
        torch.ops.torchvision.nms(boxes, torch.tensor([0.9, 0.8]), 0.5)


def test_a_fresh_interpreter_gets_the_shim_before_transformers_imports_torchvision() -> None:
    """transformers imports torchvision lazily (image_utils, video processors): importing
    serendipity.mllm first is enough, as it is in Ray and Spark workers."""
    code = (
        "import serendipity.mllm\n"
        "from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor\n"
        "import sys\n"
        "print(type(Qwen2VLVideoProcessor()).__name__, 'torchvision' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["Qwen2VLVideoProcessor", "True"]


def test_a_failing_shim_surfaces_as_import_error_and_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hook once let any exception escape an import and marked itself done before the shim ran."""
    from serendipity.mllm import torchvision_compat

    def broken() -> bool:
        raise RuntimeError("library define failed")

    hook = torchvision_compat._BeforeTorchvision()
    monkeypatch.setattr(torchvision_compat, "ensure_torchvision_importable", broken)
    with pytest.raises(ImportError, match="RuntimeError: library define failed"):
        hook.find_spec("torchvision")
    assert hook.done is False
    monkeypatch.setattr(torchvision_compat, "ensure_torchvision_importable", lambda: True)
    assert hook.find_spec("torchvision") is None and hook.done is True
    assert hook.find_spec("numpy") is None

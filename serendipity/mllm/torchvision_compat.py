"""Make torchvision importable on a CPU-only torch whose torchvision wheel is a CUDA build.

transformers' video processors (Qwen2-VL, Qwen2.5-VL, LLaVA-OneVision) need torchvision, and transformers
imports it as soon as it is installed (``transformers.image_utils``, used by every processor). The Linux
torchvision wheels on PyPI are CUDA builds: their C extension (``torchvision/_C.so``, the detection ops
such as ``nms``) links libtorch_cuda and cannot load against the CPU torch wheel. torchvision copes with
a missing extension everywhere but at import: ``torchvision/_meta_registrations.py`` registers fake
kernels for ``torchvision::nms`` and ``torchvision::qnms`` unconditionally and fails with "operator
torchvision::nms does not exist", which takes transformers' processors (and sentence-transformers) down.

``ensure_torchvision_importable`` defines exactly those two operator schemas, without kernels, when
(and only when) torch has no CUDA build, the extension cannot load and the operators are not defined.
The pure-tensor parts that transformers uses (``torchvision.transforms.v2.functional``) then work, and
the C++ ops still fail loudly when called (torchvision's own "Couldn't load custom C++ ops" error). On a
machine where the extension loads (a GPU machine, or a CPU build of torchvision) it does nothing.

A process must run it before its first ``import torchvision``, and transformers imports torchvision
lazily and deep inside. ``install_import_hook`` (run when ``serendipity.mllm`` is imported) therefore
registers an import hook that runs it the first time anything looks torchvision up; it costs nothing
until then and does not import torch itself.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from typing import Any

# The operators torchvision's import registers fake kernels for without checking that they exist.
_IMPORT_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
# The definitions last as long as this Library object: it is kept for the life of the process.
_defined: Any = None


def _extension_loads(package_dir: str) -> bool:
    """Whether torchvision's C extension loads into this process (loading it is what torchvision does)."""
    import torch

    finder = importlib.machinery.FileFinder(
        package_dir, (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES)
    )
    spec = finder.find_spec("_C")
    if spec is None or spec.origin is None:
        return False
    try:
        torch.ops.load_library(spec.origin)
    except Exception:  # noqa: BLE001 - OSError (missing libtorch_cuda), RuntimeError (undefined symbols), ...
        return False
    return True


def ensure_torchvision_importable() -> bool:
    """Define the operator schemas torchvision's import needs when its C extension cannot load on a
    CPU-only torch. Returns whether it defined them (now or earlier); idempotent."""
    global _defined
    if _defined is not None:
        return True
    spec = importlib.machinery.PathFinder.find_spec("torchvision")  # past the import hook below
    if spec is None or not spec.submodule_search_locations:
        return False  # not installed: nothing to make importable
    import torch

    if torch.version.cuda is not None or getattr(torch.version, "hip", None) is not None:
        return False  # a GPU build of torch loads torchvision's extension itself
    if hasattr(torch.ops.torchvision, "nms"):
        return False  # defined already (the extension, or someone else)
    if _extension_loads(spec.submodule_search_locations[0]):
        return False
    library = torch.library.Library("torchvision", "DEF")
    for schema in _IMPORT_SCHEMAS:
        library.define(schema)
    _defined = library
    return True


class _BeforeTorchvision:
    """A meta path finder that finds nothing: it runs the shim the first time torchvision is looked up.
    It stays in ``sys.meta_path`` afterwards (removing it while the import system walks the list would
    skip the next finder). It counts as done only once the shim ran through; a shim that fails raises
    ``ImportError`` (what an import's caller handles, e.g. transformers taking torchvision as absent),
    never another exception, and is tried again at the next lookup."""

    def __init__(self) -> None:
        self.done = False
        self._running = False  # the shim imports torch, which may look torchvision up itself

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name != "torchvision" or self.done or self._running:
            return None
        self._running = True
        try:
            ensure_torchvision_importable()
        except Exception as error:  # noqa: BLE001 - surfaced as the ImportError an import may raise
            raise ImportError(
                f"preparing torchvision's import failed: {type(error).__name__}: {error}", name=name
            ) from error
        finally:
            self._running = False
        self.done = True
        return None


def install_import_hook() -> None:
    """Run ``ensure_torchvision_importable`` before this process's first torchvision import; idempotent."""
    if "torchvision" in sys.modules or any(isinstance(f, _BeforeTorchvision) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _BeforeTorchvision())


INSTALL_HINT = "install the torchvision release paired with your torch (constraints.txt pins it)"


def torchvision_problem() -> str | None:
    """Why torchvision cannot serve transformers' video processors here, or None when it can."""
    if importlib.util.find_spec("torchvision") is None:
        return "torchvision is not installed"
    ensure_torchvision_importable()
    try:
        import torchvision.transforms.v2.functional  # noqa: F401
    except Exception as error:  # any import failure: report it as it is
        return f"torchvision does not import: {type(error).__name__}: {error}"
    return None

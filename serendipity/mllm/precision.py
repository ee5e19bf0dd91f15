"""The GPU operating point: device, precision and a start-up check of batch sizes against GPU memory.

``mllm.precision: auto`` picks bf16 on a GPU that supports it, else fp16 on a GPU, else fp32 (CPUs).
Training keeps fp32 weights and runs the forward pass under autocast (with a gradient scaler for fp16);
inference loads the weights in the chosen dtype. Before the first step, ``check_memory`` compares an
estimate of the memory a batch needs (weights, gradients and AdamW state from the parameter count,
activations from batch size, sequence length and hidden size) with the GPU's free memory and says which
batch size fits when it does not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

Precision = Literal["auto", "fp32", "bf16", "fp16"]
GIB = 1024**3
_DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
ADAMW_BYTES_PER_PARAMETER = 4 + 4 + 8  # fp32 weight, gradient, two moments
# Activations kept for backward per token, layer and hidden unit (about 34 bytes in half precision,
# Korthikanti et al. 2022, without the attention-score term); doubled in fp32.
ACTIVATION_BYTES_PER_TOKEN_LAYER_UNIT = 34
MEMORY_HEADROOM = (
    0.9  # share of the free memory a run may plan to use (allocator fragmentation, CUDA context)
)


class GpuMemoryError(ValueError):
    """The configured batch size cannot fit in the GPU's memory."""


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_precision(precision: Precision | str, device: str) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for ``device``; asking for half precision on a CPU is an error."""
    import torch

    on_gpu = str(device).startswith("cuda")
    if precision == "auto":
        if not on_gpu:
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision not in _DTYPE_BYTES:
        raise ValueError(f"unknown precision {precision!r}; choose auto, fp32, bf16 or fp16")
    if precision == "fp16" and not on_gpu:
        raise ValueError("mllm.precision: fp16 needs a GPU; use auto, fp32 or bf16 on a CPU")
    if precision == "bf16" and on_gpu and not torch.cuda.is_bf16_supported():
        raise ValueError(f"mllm.precision: bf16 is not supported by {torch.cuda.get_device_name()}; use fp16")
    return precision


def torch_dtype(precision: str) -> Any:
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


@contextlib.contextmanager
def autocast(device: Any, precision: str) -> Iterator[None]:
    """Mixed precision for the forward pass (nothing for fp32)."""
    import torch

    if precision == "fp32":
        yield
        return
    with torch.autocast(device_type=torch.device(device).type, dtype=torch_dtype(precision)):
        yield


def gradient_scaler(device: Any, precision: str) -> Any:
    """A GradScaler for fp16 (gradients underflow without it), else None."""
    import torch

    if precision != "fp16":
        return None
    return torch.amp.GradScaler(torch.device(device).type)


@dataclass(frozen=True)
class ModelShape:
    """What the memory estimate needs from a model: parameter counts, hidden size and layers."""

    parameters: int
    trainable_parameters: int
    hidden_size: int
    num_layers: int

    @classmethod
    def of(cls, model: Any) -> ModelShape:
        config = getattr(model, "config", None)
        text = getattr(config, "text_config", None) or config
        parameters = list(model.parameters())
        return cls(
            parameters=sum(p.numel() for p in parameters),
            trainable_parameters=sum(p.numel() for p in parameters if p.requires_grad),
            hidden_size=int(getattr(text, "hidden_size", 0) or 0),
            num_layers=int(getattr(text, "num_hidden_layers", 0) or 0),
        )


def training_bytes(shape: ModelShape, batch_size: int, sequence_length: int, precision: str) -> int:
    """Weights (fp32), gradients and AdamW state of the trainable parameters, and the activations."""
    frozen = shape.parameters - shape.trainable_parameters
    weights = frozen * 4 + shape.trainable_parameters * ADAMW_BYTES_PER_PARAMETER
    per_unit = ACTIVATION_BYTES_PER_TOKEN_LAYER_UNIT * (2 if precision == "fp32" else 1)
    activations = batch_size * sequence_length * shape.num_layers * shape.hidden_size * per_unit
    return weights + activations


def inference_bytes(
    shape: ModelShape, batch_size: int, num_beams: int, sequence_length: int, precision: str
) -> int:
    """Weights in the inference dtype and the key/value cache of every beam."""
    width = _DTYPE_BYTES[precision]
    cache = batch_size * num_beams * sequence_length * shape.num_layers * 2 * shape.hidden_size * width
    return shape.parameters * width + cache


def largest_fitting_batch(bytes_for_batch: Any, free_bytes: int, ceiling: int) -> int:
    """The largest batch size up to ``ceiling`` whose estimate fits in ``free_bytes`` (0 when none)."""
    budget = free_bytes * MEMORY_HEADROOM
    fitting = 0
    for batch_size in range(1, ceiling + 1):
        if bytes_for_batch(batch_size) > budget:
            break
        fitting = batch_size
    return fitting


def check_memory(
    what: str, setting: str, batch_size: int, bytes_for_batch: Any, free_bytes: int, device_name: str
) -> int:
    """Raise ``GpuMemoryError`` naming the setting and the batch size that fits; returns the estimate."""
    needed = int(bytes_for_batch(batch_size))
    if needed <= free_bytes * MEMORY_HEADROOM:
        return needed
    fitting = largest_fitting_batch(bytes_for_batch, free_bytes, batch_size)
    advice = (
        f"set {setting} to at most {fitting}"
        if fitting
        else "even one example does not fit: use LoRA (mllm.lora), bf16 (mllm.precision) or a bigger GPU"
    )
    raise GpuMemoryError(
        f"{what} with {setting}={batch_size} needs about {needed / GIB:.1f} GiB on {device_name}, "
        f"which has {free_bytes / GIB:.1f} GiB free ({MEMORY_HEADROOM:.0%} usable): {advice}"
    )


def gpu_free_bytes(device: Any) -> tuple[int, str]:
    """(free bytes, name) of a CUDA device."""
    import torch

    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return int(free), torch.cuda.get_device_name(torch.device(device))


def check_training_memory(
    model: Any, *, batch_size: int, num_workers: int, sequence_length: int, device: Any, precision: str
) -> int:
    """Fail before the first step when a worker's share of ``mllm.batch_size`` cannot fit on its GPU."""
    shape = ModelShape.of(model)
    free, name = gpu_free_bytes(device)
    return check_memory(
        f"fine-tuning ({shape.trainable_parameters:,} of {shape.parameters:,} parameters trained, "
        f"{precision}, {num_workers} worker(s), sequences up to {sequence_length} tokens)",
        "mllm.batch_size",
        batch_size,
        lambda size: training_bytes(shape, -(-size // num_workers), sequence_length, precision),
        free,
        name,
    )


def inference_device(num_gpus_per_actor: float | None) -> str | None:
    """``cuda`` when GPUs are asked for (or, with None, when this process sees one); None: the CPU."""
    if num_gpus_per_actor is None:
        return "cuda" if cuda_available() else None
    return "cuda" if num_gpus_per_actor > 0 else None


def check_inference_memory(
    model: Any, *, batch_size: int, num_beams: int, sequence_length: int, device: Any, precision: str
) -> int:
    """Fail at actor start-up when ``inference.batch_size`` prompts and their beams cannot fit."""
    shape = ModelShape.of(model)
    free, name = gpu_free_bytes(device)
    # The weights are already on the GPU: free memory only has to hold the key/value caches.
    return check_memory(
        f"inference ({shape.parameters:,} parameters in {precision}, {num_beams} beams, "
        f"sequences up to {sequence_length} tokens)",
        "inference.batch_size",
        batch_size,
        lambda size: (
            inference_bytes(shape, size, num_beams, sequence_length, precision)
            - inference_bytes(shape, 0, num_beams, sequence_length, precision)
        ),
        free,
        name,
    )

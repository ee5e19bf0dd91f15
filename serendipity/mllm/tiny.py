"""Tiny vision-language models of the real families, built offline, sized to train on a laptop CPU.

``llava`` (the default): CLIP + Llama joined by LLaVA's projector. The others are tiny instances of
the architectures people fine-tune (Qwen2-VL, Qwen2.5-VL, SmolVLM/Idefics3, LLaVA-OneVision,
PaliGemma, Gemma 3), each with its own processor class and chat template (``serendipity.mllm.families``),
so fine-tuning and inference are checked never to depend on one model family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from serendipity.mllm.families import gemma, llava, onevision, qwen, smolvlm
from serendipity.mllm.families.common import TinySize, TokenizerKind, dataset_texts, train_tokenizer
from serendipity.mllm.model import ModelMetadata, save_model

__all__ = [
    "ARCHITECTURES",
    "FAMILIES",
    "TINY_RANDOM_KEY",
    "TinySize",
    "build_tiny_model",
    "dataset_texts",
    "init_tiny_model",
    "train_tokenizer",
]

TinyArchitecture = Literal[
    "llava", "gemma3", "paligemma", "smolvlm", "qwen2_vl", "qwen2_5_vl", "llava_onevision"
]


@dataclass(frozen=True)
class Family:
    """A tiny family: its builder, its tokenizer kind and whether its processor takes video natively."""

    build: Callable[[list[str], TinySize], tuple[Any, Any]]
    tokenizer: TokenizerKind
    native_video: bool


FAMILIES: dict[str, Family] = {
    "llava": Family(llava.build, "byte_level", native_video=False),
    "gemma3": Family(gemma.build_gemma3, "sentencepiece", native_video=False),
    "paligemma": Family(gemma.build_paligemma, "sentencepiece", native_video=False),
    "smolvlm": Family(smolvlm.build, "byte_level", native_video=False),
    "qwen2_vl": Family(qwen.build_qwen2_vl, "byte_level", native_video=True),
    "qwen2_5_vl": Family(qwen.build_qwen2_5_vl, "byte_level", native_video=True),
    "llava_onevision": Family(onevision.build, "byte_level", native_video=True),
}
ARCHITECTURES: tuple[str, ...] = tuple(FAMILIES)
TINY_RANDOM_KEY = "tiny_random"  # in the metadata of every model built here: fine-tuning warns on it


def build_tiny_model(
    texts: list[str],
    *,
    architecture: TinyArchitecture = "llava",
    size: TinySize | None = None,
    seed: int = 0,
) -> tuple[Any, Any]:
    """A freshly initialised tiny VLM and its processor (default size: ``TinySize()``, 32-px images);
    the tokenizer is trained on ``texts``."""
    import torch

    if architecture not in FAMILIES:
        raise ValueError(f"unknown tiny architecture {architecture!r}; choose one of {ARCHITECTURES}")
    if not texts:
        raise ValueError("the tokenizer needs texts (titles, descriptions); got none")
    torch.manual_seed(seed)
    model, processor = FAMILIES[architecture].build(texts, size or TinySize())
    tokenizer = processor.tokenizer
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model, processor


def init_tiny_model(
    out_dir: str | Path,
    dataset_dir: str | Path,
    *,
    architecture: TinyArchitecture = "llava",
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """Build a tiny model for a dataset and save it (model + processor) to ``out_dir``."""
    model, processor = build_tiny_model(
        dataset_texts(dataset_dir),
        architecture=architecture,
        size=TinySize.for_image(image_size),
        seed=seed,
    )
    metadata = {
        "architecture": architecture,
        "dataset_dir": str(dataset_dir),
        "image_size": image_size,
        TINY_RANDOM_KEY: True,
    }
    return save_model(model, processor, out_dir, ModelMetadata.model_validate(metadata))

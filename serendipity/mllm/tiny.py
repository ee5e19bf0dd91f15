"""Tiny vision-language models built from transformers building blocks, sized to train on a laptop CPU.

``llava`` (the default): a CLIP vision tower + a Llama decoder joined by LLaVA's projector.
``gemma3``: a SigLIP vision tower + a Gemma 3 decoder, a different architecture used to show that
fine-tuning and inference never depend on one model family. Both get a byte-level BPE tokenizer
trained on the dataset's titles, texts and cluster descriptions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow.parquet as pq

from serendipity.io import parquet_schema
from serendipity.mllm.constants import ANSWER_MARKER, REASONING_MARKER
from serendipity.mllm.model import save_model
from serendipity.schema import CLUSTERS_FILE, ITEMS_FILE

TinyArchitecture = Literal["llava", "gemma3"]
ARCHITECTURES: tuple[str, ...] = ("llava", "gemma3")

_LLAVA_SPECIAL = {"pad": "<pad>", "bos": "<s>", "eos": "</s>", "unk": "<unk>", "image": "<image>"}
_GEMMA_SPECIAL = {
    "pad": "<pad>",
    "bos": "<bos>",
    "eos": "<eos>",
    "unk": "<unk>",
    "boi": "<start_of_image>",
    "eoi": "<end_of_image>",
    "image": "<image_soft_token>",
}
# Words every prompt uses, so the tokenizer learns them even from a tiny catalogue.
_PROMPT_WORDS = (
    f"{ANSWER_MARKER} {REASONING_MARKER} Title: Topic: in Describe cluster: Name the nearby topic "
    "this viewer has not explored yet. Say what the video shows first."
)


def dataset_texts(dataset_dir: str | Path) -> list[str]:
    """Titles, texts and cluster descriptions of a dataset directory (the tokenizer's corpus)."""
    dataset_dir = Path(dataset_dir)
    texts: list[str] = []
    for name, columns in ((ITEMS_FILE, ("title", "text")), (CLUSTERS_FILE, ("description",))):
        path = dataset_dir / name
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing; the tokenizer is trained on the dataset's texts")
        present = [c for c in columns if c in parquet_schema(path).names]
        frame = pq.read_table(path, columns=present).to_pandas()
        for column in present:
            texts.extend(str(v) for v in frame[column] if not pd.isna(v) and str(v))
    return texts


def train_tokenizer(texts: Iterable[str], special: dict[str, str], vocab_size: int = 4096) -> Any:
    """A byte-level BPE tokenizer (exact round trips, no unknown characters) as PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=special["unk"]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [*texts, _PROMPT_WORDS]
    tokenizer.train_from_iterator(corpus, trainer)
    extra = {f"{key}_token": value for key, value in special.items() if key in ("image", "boi", "eoi")}
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=special["pad"],
        bos_token=special["bos"],
        eos_token=special["eos"],
        unk_token=special["unk"],
        extra_special_tokens=extra,
        padding_side="right",
    )


@dataclass(frozen=True)
class TinySize:
    """How big a tiny model is: the image and its patches, the decoder, the vision tower."""

    image_size: int = 32
    patch_size: int = 8  # 32-px images -> 4x4 patches per image
    hidden_size: int = 128
    num_layers: int = 3
    vision_hidden_size: int = 64
    vision_layers: int = 2

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )

    @classmethod
    def for_image(cls, image_size: int) -> TinySize:
        """The default size for ``image_size``: 4x4 patches (at least 4 px each)."""
        return cls(image_size=image_size, patch_size=max(4, image_size // 4))

    def vision(self) -> dict[str, int]:
        return {
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "hidden_size": self.vision_hidden_size,
            "intermediate_size": self.vision_hidden_size * 2,
            "num_hidden_layers": self.vision_layers,
            "num_attention_heads": 4,
        }


def _llava(texts: list[str], size: TinySize) -> tuple[Any, Any]:
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tokenizer = train_tokenizer(texts, _LLAVA_SPECIAL)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": size.image_size},
        crop_size={"height": size.image_size, "width": size.image_size},
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=size.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's class token, dropped by the "default" strategy
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden_size,
        intermediate_size=size.hidden_size * 2,
        num_hidden_layers=size.num_layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**size.vision()),
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(_LLAVA_SPECIAL["image"]),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    return LlavaForConditionalGeneration(config), processor


def _gemma3(texts: list[str], size: TinySize) -> tuple[Any, Any]:
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    tokenizer = train_tokenizer(texts, _GEMMA_SPECIAL)
    image_processor = Gemma3ImageProcessorPil(size={"height": size.image_size, "width": size.image_size})
    tokens_per_image = 4  # 2x2 pooled patches
    processor = Gemma3Processor(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_length=tokens_per_image
    )
    head_dim = size.hidden_size // 4
    config = Gemma3Config(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": size.hidden_size,
            "intermediate_size": size.hidden_size * 2,
            "num_hidden_layers": size.num_layers,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": head_dim,
            "query_pre_attn_scalar": head_dim,
            "max_position_embeddings": 1024,
            "sliding_window": 256,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        vision_config=size.vision(),
        mm_tokens_per_image=tokens_per_image,
        boi_token_index=tokenizer.convert_tokens_to_ids(_GEMMA_SPECIAL["boi"]),
        eoi_token_index=tokenizer.convert_tokens_to_ids(_GEMMA_SPECIAL["eoi"]),
        image_token_index=tokenizer.convert_tokens_to_ids(_GEMMA_SPECIAL["image"]),
    )
    return Gemma3ForConditionalGeneration(config), processor


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

    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown tiny architecture {architecture!r}; choose one of {ARCHITECTURES}")
    if not texts:
        raise ValueError("the tokenizer needs texts (titles, descriptions); got none")
    torch.manual_seed(seed)
    builder = _llava if architecture == "llava" else _gemma3
    model, processor = builder(texts, size or TinySize())
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
    """Build the tiny default model for a dataset and save it (model + processor) to ``out_dir``."""
    model, processor = build_tiny_model(
        dataset_texts(dataset_dir),
        architecture=architecture,
        size=TinySize.for_image(image_size),
        seed=seed,
    )
    metadata = {"architecture": architecture, "dataset_dir": str(dataset_dir), "image_size": image_size}
    return save_model(model, processor, out_dir, metadata)

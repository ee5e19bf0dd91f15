"""Thumbnails and the frames a prompt samples, by item id, as JPEG files for the explorer page.

Media are decoded offline, never while serving: ``render_media`` (``serendipity explore render``, run
by ``serendipity serve run|start`` before the app starts) writes ``WORK_DIR/explorer_media/<item>/``
(``thumbnail.jpg``, ``frame-<i>.jpg``), skipping items already rendered; the explorer's routes only read
those files (``RenderedMedia``). A path is never taken from a request: the item id selects the validated
path of the items table, which is checked again against the validation rules (inside the dataset, a
regular file, the media limits, decoded in a child process within the decode time limit) before it is
decoded. The frames are the prompt's own: ``item_media_from_row`` with the config's prompt style and
frame count, at display size.
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
from serendipity.io import write_bytes_atomic
from serendipity.media_io import MediaError, load_image
from serendipity.mllm.prompts import PromptStyle, item_media_from_row
from serendipity.validation.media_paths import media_problem
from serendipity.validation.media_probe import MediaProber

THUMBNAIL_PX = 160
FRAME_PX = 192
JPEG_QUALITY = 85
SINGLE_IMAGE_STYLES = (PromptStyle.THUMBNAIL_COT, PromptStyle.FRAME_COT)
RENDERED_DIR = "explorer_media"
THUMBNAIL_FILE = "thumbnail.jpg"
DONE_FILE = ".rendered"  # written last: the item's files are complete (possibly none: no usable media)


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

    def frames(self, item_id: int) -> list[bytes]:
        """The images of the item's prompt, as the prompt samples them, at display size (JPEG)."""
        frames = self._frames.get(item_id)
        if frames is None:
            column = self.prompt_column
            if column is None or self._usable_path(item_id, column) is None:
                return []
            try:
                media = item_media_from_row(
                    self.catalog.item_row(item_id), self.root, self.style, self.num_frames, FRAME_PX
                )
            except MediaError:
                return []
            frames = [jpeg_bytes(image) for image in media.images]
            self._frames.put(item_id, frames)
        return frames

    def frame(self, item_id: int, index: int) -> bytes | None:
        """Image ``index`` of the item's prompt, as the prompt samples it, at display size."""
        frames = self.frames(item_id)
        return frames[index] if 0 <= index < len(frames) else None


def rendered_dir(config: PipelineConfig) -> Path:
    return Path(config.work_dir).expanduser() / RENDERED_DIR


def _frame_file(index: int) -> str:
    return f"frame-{index}.jpg"


def render_media(config: PipelineConfig, catalog: ExplorerCatalog | None = None) -> dict[str, int]:
    """Decode every catalogue item's thumbnail and prompt frames to JPEG files, once (items rendered
    before are skipped); counts of items rendered, skipped and without usable media."""
    catalog = catalog or ExplorerCatalog.load(config)
    directory = rendered_dir(config)
    media = ExplorerMedia(catalog, config, cached_items=1)
    counts = {"rendered": 0, "skipped": 0, "without_media": 0}
    try:
        for item_id in catalog.items.index:
            item_dir = directory / str(int(item_id))
            if (item_dir / DONE_FILE).exists():
                counts["skipped"] += 1
                continue
            thumbnail = media.thumbnail(int(item_id))
            frames = [] if media.frame_count(int(item_id)) == 0 else media.frames(int(item_id))
            if thumbnail is not None:
                write_bytes_atomic(thumbnail, item_dir / THUMBNAIL_FILE)
            for index, frame in enumerate(frames):
                write_bytes_atomic(frame, item_dir / _frame_file(index))
            write_bytes_atomic(b"", item_dir / DONE_FILE)
            counts["rendered" if thumbnail is not None or frames else "without_media"] += 1
    finally:
        media.close()
    return counts


class RenderedMedia:
    """What the explorer serves: the files ``render_media`` wrote (reads only; nothing is decoded)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _read(self, item_id: int, name: str) -> bytes | None:
        try:
            return (self.directory / str(int(item_id)) / name).read_bytes()
        except OSError:
            return None

    def thumbnail(self, item_id: int) -> bytes | None:
        return self._read(item_id, THUMBNAIL_FILE)

    def frame(self, item_id: int, index: int) -> bytes | None:
        return self._read(item_id, _frame_file(index)) if index >= 0 else None

    def frame_count(self, item_id: int) -> int:
        count = 0
        while (self.directory / str(int(item_id)) / _frame_file(count)).is_file():
            count += 1
        return count

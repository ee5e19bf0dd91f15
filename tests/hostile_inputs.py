"""Hostile inputs added to a copy of the synthetic world: media past the limits, a decompression bomb, a file
that hangs (or crashes) the decoder, a 1 MB title and a 10 MB text. :func:`hanging_probe` runs in the
validator's probe process, so it lives in this importable module."""

from __future__ import annotations

import os
import shutil
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from serendipity.config import InputLimitsConfig
from serendipity.media_io import write_image, write_video
from serendipity.schema import ITEMS_FILE
from serendipity.validation.media_probe import (
    DECODE_TIMEOUT,
    DECODER_CRASHED,
    DECOMPRESSION_BOMB,
    FILE_TOO_LARGE,
    FRAME_TOO_LARGE,
    TOO_MANY_FRAMES,
    VIDEO_TOO_LONG,
    probe_media_file,
)

HANG_MARKER = "hangs-the-decoder"
CRASH_MARKER = "crashes-the-decoder"
BOMB_SIDE = 30_000  # 9e8 pixels: past twice Pillow's default limit, so Image.open raises
DECODE_TIMEOUT_S = 5.0
# Limits the world's media (32 x 32, 16 frames at 5 fps, a few kB each) are well within.
LIMITS = InputLimitsConfig(
    max_media_bytes=60_000,
    max_video_seconds=5.0,
    max_video_frames=30,
    max_frame_pixels=48 * 48,
    media_decode_timeout_s=DECODE_TIMEOUT_S,
)
ONE_MB_TITLE = "t" * 1_000_000
TEN_MB_TEXT = "x" * 10_000_000
TITLE_ROW, TEXT_ROW = 7, 8


@dataclass(frozen=True)
class HostileMedia:
    row: int  # of items.parquet
    column: str
    file_name: str
    reason: str  # with LIMITS and hanging_probe
    needs_probe_swap: bool = False  # only hanging_probe makes this file hostile


HOSTILE_MEDIA = (
    HostileMedia(0, "video_path", "long.mp4", VIDEO_TOO_LONG),  # 8 s at 8 fps
    HostileMedia(1, "video_path", "wide.mp4", FRAME_TOO_LARGE),  # 64 x 64 frames
    HostileMedia(2, "video_path", "noise.mp4", FILE_TOO_LARGE),  # ~100 kB of noise
    HostileMedia(3, "video_path", "many.mp4", TOO_MANY_FRAMES),  # 40 frames in one second
    HostileMedia(4, "thumbnail_path", "bomb.png", DECOMPRESSION_BOMB),
    HostileMedia(5, "thumbnail_path", f"{HANG_MARKER}.png", DECODE_TIMEOUT, needs_probe_swap=True),
    HostileMedia(6, "video_path", f"{CRASH_MARKER}.mp4", DECODER_CRASHED, needs_probe_swap=True),
)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_bomb_png(path: Path, side: int = BOMB_SIDE) -> Path:
    """A few kB of PNG whose header claims ``side`` x ``side`` RGB pixels."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + 3 * side) * 16)  # the first rows; the file ends early anyway
    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png + _png_chunk(b"IEND", b""))
    return path


def write_clip(path: Path, frames: int, fps: int, side: int, noise: bool = False) -> Path:
    """A real H.264 MP4: flat frames (a tiny file), or random noise (a large one)."""
    rng = np.random.default_rng(0)
    shape = (frames, side, side, 3)
    pixels = rng.integers(0, 256, shape, dtype=np.uint8) if noise else np.full(shape, 90, np.uint8)
    return write_video(path, pixels, fps=fps)


def write_thumbnail(path: Path, side: int = 32) -> Path:
    return write_image(path, np.full((side, side, 3), 128, np.uint8))


def hanging_probe(path: Path, column: str, limits: InputLimitsConfig) -> str | None:
    """The real probe, except that it never returns on a :data:`HANG_MARKER` file and aborts the process
    on a :data:`CRASH_MARKER` one."""
    if HANG_MARKER in path.name:
        time.sleep(3600)
    if CRASH_MARKER in path.name:
        os.abort()
    return probe_media_file(path, column, limits)


def _write_hostile_media(directory: Path) -> None:
    write_clip(directory / "long.mp4", frames=64, fps=8, side=32)
    write_clip(directory / "wide.mp4", frames=8, fps=8, side=64)
    write_clip(directory / "noise.mp4", frames=24, fps=8, side=64, noise=True)
    write_clip(directory / "many.mp4", frames=40, fps=40, side=32)
    write_bomb_png(directory / "bomb.png")
    write_thumbnail(directory / f"{HANG_MARKER}.png")
    write_clip(directory / f"{CRASH_MARKER}.mp4", frames=4, fps=4, side=32)


def build_hostile_dataset(world_dataset: Path, target: Path) -> Path:
    """A copy of the world with :data:`HOSTILE_MEDIA` in place of some media, and the huge title and text."""
    dataset = Path(shutil.copytree(world_dataset, target, symlinks=True))
    _write_hostile_media(dataset / "media" / "hostile")
    items = pq.read_table(dataset / ITEMS_FILE).to_pandas()
    world_media = [dataset / p for c in ("thumbnail_path", "video_path") for p in items[c].dropna()]
    assert max(path.stat().st_size for path in world_media) < LIMITS.max_media_bytes  # the world is valid
    for hostile in HOSTILE_MEDIA:
        items.loc[hostile.row, hostile.column] = f"media/hostile/{hostile.file_name}"
    items.loc[TITLE_ROW, "title"] = ONE_MB_TITLE
    items.loc[TEXT_ROW, "text"] = TEN_MB_TEXT
    pq.write_table(pa.Table.from_pandas(items, preserve_index=False), dataset / ITEMS_FILE)
    return dataset

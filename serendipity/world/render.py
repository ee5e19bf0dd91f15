"""Item media: frames that show an item's own topic and, in a window of frames, its hidden cue glyph.

Frame layout (size S, glyph cell g = S // 8): a grey band of height g along the top; below it a
background whose hue encodes the level-1 cluster and whose horizontal stripes encode the level-2
index; a moving shape whose kind encodes the level-3 index and whose tint encodes the level-4
index. On cue frames the band carries a bright marker cell followed by ``bits`` cells spelling the
cue cluster's index among its siblings in binary.
"""

from __future__ import annotations

import colorsys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from serendipity.media_io import write_image, write_video

BAND_GREY = 0.5
NOISE_STD = 0.02
SHAPE_KINDS = 6
GLYPH_PRESENT_THRESHOLD = 20.0  # marker cell brightness above the band grey, in 0..255 units
THUMBS_DIR = "media/thumbs"
VIDEOS_DIR = "media/videos"


@dataclass(frozen=True)
class MediaSpec:
    """Everything needed to render some items' media; arrays are aligned with ``item_ids``."""

    item_ids: np.ndarray
    l1_index: np.ndarray
    l2_index: np.ndarray  # index among siblings
    l3_index: np.ndarray
    l4_index: np.ndarray
    cue_index: np.ndarray  # cue cluster's index among its siblings
    visual_richness: np.ndarray
    cue_start: np.ndarray
    cue_length: np.ndarray
    branching: tuple[int, int, int, int]
    frame_size: int
    frames: int
    fps: int
    seed: int
    glyph_contrast_min: float

    def subset(self, rows: np.ndarray) -> MediaSpec:
        arrays = {
            name: getattr(self, name)[rows]
            for name in (
                "item_ids", "l1_index", "l2_index", "l3_index", "l4_index", "cue_index",
                "visual_richness", "cue_start", "cue_length",
            )
        }  # fmt: skip
        return MediaSpec(
            **arrays,
            branching=self.branching,
            frame_size=self.frame_size,
            frames=self.frames,
            fps=self.fps,
            seed=self.seed,
            glyph_contrast_min=self.glyph_contrast_min,
        )


def glyph_bits(siblings: int) -> int:
    return max(1, int(np.ceil(np.log2(max(siblings, 2)))))


def _rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    return np.asarray(colorsys.hsv_to_rgb(hue % 1.0, saturation, value), dtype=np.float64)


def _shape_mask(kind: int, xx: np.ndarray, yy: np.ndarray, radius: float) -> np.ndarray:
    ax, ay = np.abs(xx), np.abs(yy)
    if kind == 0:
        return xx**2 + yy**2 <= radius**2
    if kind == 1:
        return (ax <= radius * 0.8) & (ay <= radius * 0.8)
    if kind == 2:
        return (yy <= radius * 0.7) & (yy >= -radius) & (ax <= (yy + radius) * 0.55)
    if kind == 3:
        return ((ax <= radius * 0.3) & (ay <= radius)) | ((ay <= radius * 0.3) & (ax <= radius))
    if kind == 4:
        dist = xx**2 + yy**2
        return (dist <= radius**2) & (dist >= (radius * 0.55) ** 2)
    return ax + ay <= radius


def render_item_frames(spec: MediaSpec, row: int) -> np.ndarray:
    """Frames uint8 [T,S,S,3] of one item (deterministic per item id and seed)."""
    size, frames = spec.frame_size, spec.frames
    b1, b2, b3, b4 = spec.branching
    rng = np.random.default_rng([spec.seed, int(spec.item_ids[row]), 7])
    richness = float(spec.visual_richness[row])
    cell = max(2, size // 8)
    hue = float(spec.l1_index[row]) / b1

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    body_height = size - cell
    stripes = 0.75 + 0.25 * np.cos(2 * np.pi * (spec.l2_index[row] + 1) * (yy - cell) / body_height)
    background = _rgb(hue, 0.3 + 0.6 * richness, 0.75)[None, None, :] * stripes[..., None]
    canvas = np.broadcast_to(background, (frames, size, size, 3)).copy()

    kind = int(spec.l3_index[row]) % SHAPE_KINDS
    radius = size * (0.16 + 0.05 * ((int(spec.l3_index[row]) // SHAPE_KINDS) % 3))
    tint = _rgb(hue + 0.5 + 0.3 * float(spec.l4_index[row]) / b4, 0.75, 0.95)
    low, high = cell + radius, size - radius
    start = rng.uniform([radius, low], [size - radius, high])
    velocity = rng.uniform(-1.0, 1.0, 2) * size / (2.0 * frames)
    steps = np.arange(frames)[:, None]
    centres = np.clip(start[None, :] + velocity[None, :] * steps, [radius, low], [size - radius, high])
    for t in range(frames):
        mask = _shape_mask(kind, xx - centres[t, 0], yy - centres[t, 1], radius)
        canvas[t][mask] = tint

    canvas[:, :cell, :, :] = BAND_GREY
    first, length = int(spec.cue_start[row]), int(spec.cue_length[row])
    contrast = spec.glyph_contrast_min + (1.0 - spec.glyph_contrast_min) * richness
    bright, dark = BAND_GREY + 0.5 * contrast, BAND_GREY - 0.5 * contrast
    cue_frames = canvas[first : first + length]
    cue_frames[:, :cell, :cell, :] = bright
    bits = glyph_bits(b3)
    for bit in range(bits):
        is_one = (int(spec.cue_index[row]) >> (bits - 1 - bit)) & 1
        cue_frames[:, :cell, cell * (bit + 1) : cell * (bit + 2), :] = bright if is_one else dark

    canvas += rng.normal(0.0, NOISE_STD, canvas.shape)
    return (np.clip(canvas, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def thumbnail_index(spec: MediaSpec, row: int) -> int:
    """The curated representative frame: the middle of the cue window."""
    return int(spec.cue_start[row]) + int(spec.cue_length[row]) // 2


def decode_cue_glyph(frame: np.ndarray, siblings: int) -> int | None:
    """Read the cue glyph from a frame: the cue's sibling index, or ``None`` when no glyph is shown."""
    size = frame.shape[0]
    cell = max(2, size // 8)
    luminance = frame.astype(np.float64).mean(axis=-1)
    grey = BAND_GREY * 255.0

    def cell_mean(column: int) -> float:
        return float(luminance[:cell, cell * column : cell * (column + 1)].mean())

    if cell_mean(0) - grey < GLYPH_PRESENT_THRESHOLD:
        return None
    bits = glyph_bits(siblings)
    value = 0
    for bit in range(bits):
        value = (value << 1) | int(cell_mean(bit + 1) > grey)
    return value


def media_paths(item_id: int) -> tuple[str, str]:
    """Thumbnail and video paths of an item, relative to the dataset directory."""
    return f"{THUMBS_DIR}/{item_id}.png", f"{VIDEOS_DIR}/{item_id}.mp4"


def _write_chunk(dataset_dir: str, spec: MediaSpec) -> int:
    root = Path(dataset_dir)
    for row in range(len(spec.item_ids)):
        frames = render_item_frames(spec, row)
        thumb, video = media_paths(int(spec.item_ids[row]))
        write_image(root / thumb, frames[thumbnail_index(spec, row)])
        write_video(root / video, frames, spec.fps)
    return len(spec.item_ids)


def write_media(dataset_dir: Path, spec: MediaSpec, workers: int = 1, chunk_size: int = 256) -> int:
    """Render and write every item's thumbnail and video; returns the number of items written."""
    (dataset_dir / THUMBS_DIR).mkdir(parents=True, exist_ok=True)
    (dataset_dir / VIDEOS_DIR).mkdir(parents=True, exist_ok=True)
    total = len(spec.item_ids)
    chunks = [spec.subset(np.arange(lo, min(lo + chunk_size, total))) for lo in range(0, total, chunk_size)]
    if workers <= 1 or len(chunks) <= 1:
        return sum(_write_chunk(str(dataset_dir), chunk) for chunk in chunks)
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        return sum(pool.map(_write_chunk, [str(dataset_dir)] * len(chunks), chunks))

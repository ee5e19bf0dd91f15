"""Media helpers: write and read thumbnails and short videos, sample frames uniformly (PyAV, Pillow).

Every reader raises :class:`MediaError` naming the file and what failed, so callers can fall back
(e.g. to a text-only prompt) or quarantine the item with a reason.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np

VIDEO_CODEC = "libx264"
VIDEO_PIXEL_FORMAT = "yuv420p"
# Near-lossless: the tiny frames carry fine visual detail (the world's cue glyph) that must survive.
VIDEO_ENCODER_OPTIONS = {"crf": "12", "preset": "veryfast"}


class MediaError(ValueError):
    """A media file is missing, corrupt or unreadable, or an array cannot be written as media."""


def _temp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.stem}.tmp-{uuid.uuid4().hex[:8]}{path.suffix}")


def _check_frames(frames: np.ndarray, path: Path) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise MediaError(f"{path}: frames must be uint8 [T,H,W,3], got {frames.dtype} {frames.shape}")
    if frames.shape[0] < 1:
        raise MediaError(f"{path}: a video needs at least one frame")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise MediaError(f"{path}: {VIDEO_PIXEL_FORMAT} needs even frame sizes, got {frames.shape[1:3]}")


def write_video(path: str | Path, frames: np.ndarray, fps: int) -> Path:
    """Encode ``frames`` (uint8 [T,H,W,3]) as an H.264 MP4 at ``path``, atomically."""
    import av

    path = Path(path)
    _check_frames(frames, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path)
    try:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream(VIDEO_CODEC, rate=int(fps))
            stream.width = int(frames.shape[2])
            stream.height = int(frames.shape[1])
            stream.pix_fmt = VIDEO_PIXEL_FORMAT
            stream.options = dict(VIDEO_ENCODER_OPTIONS)
            stream.codec_context.thread_count = 1
            for array in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    except av.FFmpegError as error:
        raise MediaError(f"{path}: could not encode video: {error}") from error
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_image(path: str | Path, array: np.ndarray) -> Path:
    """Write a uint8 [H,W,3] array as an image (format from the suffix, e.g. PNG), atomically."""
    from PIL import Image

    path = Path(path)
    if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise MediaError(f"{path}: image must be uint8 [H,W,3], got {array.dtype} {array.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path)
    try:
        Image.fromarray(array, mode="RGB").save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _resize(array: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if array.shape[0] == size and array.shape[1] == size:
        return array
    image = Image.fromarray(array, mode="RGB").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def _require_file(path: Path, kind: str) -> None:
    if not path.exists():
        raise MediaError(f"{path}: {kind} file not found")
    if not path.is_file():
        raise MediaError(f"{path}: {kind} path is not a regular file")


def load_image(path: str | Path, size: int) -> np.ndarray:
    """Decode an image as RGB uint8 [size,size,3]."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    _require_file(path, "image")
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise MediaError(f"{path}: could not decode image: {error}") from error
    return _resize(array, size)


def decode_video(path: str | Path) -> np.ndarray:
    """Decode every frame of a (short) video as RGB uint8 [T,H,W,3]."""
    import av

    path = Path(path)
    _require_file(path, "video")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: no video stream")
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise MediaError(f"{path}: could not decode video: {error}") from error
    if not frames:
        raise MediaError(f"{path}: video has no decodable frames")
    return np.stack(frames)


def uniform_frame_indices(total: int, num_frames: int) -> np.ndarray:
    """Centres of ``num_frames`` equal segments of a ``total``-frame video."""
    if total < 1 or num_frames < 1:
        raise ValueError(f"need total >= 1 and num_frames >= 1, got {total}, {num_frames}")
    return np.minimum(((np.arange(num_frames) + 0.5) * total / num_frames).astype(np.int64), total - 1)


def sample_frames(video_path: str | Path, num_frames: int, size: int) -> np.ndarray:
    """``num_frames`` uniformly sampled frames of the decoded video, resized: uint8 [N,size,size,3]."""
    frames = decode_video(video_path)
    indices = uniform_frame_indices(len(frames), num_frames)
    return np.stack([_resize(frames[i], size) for i in indices])


def random_frame(video_path: str | Path, rng: np.random.Generator, size: int) -> np.ndarray:
    """One frame drawn uniformly at random from the video, resized: uint8 [size,size,3]."""
    frames = decode_video(video_path)
    return _resize(frames[int(rng.integers(len(frames)))], size)

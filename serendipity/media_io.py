"""Media helpers: write and read thumbnails and short videos, sample frames uniformly (PyAV, Pillow).

Every reader raises :class:`MediaError` naming the file and what failed, so callers can fall back
(e.g. to a text-only prompt) or quarantine the item with a reason. Readers of videos seek to the frames
they need and read sizes from headers, so a long or large file costs what is sampled, not what it holds.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

VIDEO_CODEC = "libx264"
VIDEO_PIXEL_FORMAT = "yuv420p"
# Near-lossless: the tiny frames carry fine visual detail (the world's cue glyph) that must survive.
VIDEO_ENCODER_OPTIONS = {"crf": "12", "preset": "veryfast"}


# Sampled frames closer than this are reached by decoding on; farther ones by seeking to a keyframe.
SEEK_GAP_SECONDS = 2.0


class MediaError(ValueError):
    """A media file is missing, corrupt or unreadable, or an array cannot be written as media."""


class ImageBombError(MediaError):
    """An image whose pixel count trips Pillow's decompression-bomb check (never decoded)."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video's headers say, read without decoding a frame."""

    frames: int
    seconds: float
    width: int
    height: int

    @property
    def pixels_per_frame(self) -> int:
        return self.width * self.height


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


def _refuse_bomb(path: Path, width: int, height: int) -> None:
    from PIL import Image

    # Pillow only warns between its limit and twice it (and then decodes); refuse that range too.
    bomb_limit = Image.MAX_IMAGE_PIXELS
    if bomb_limit is not None and width * height > bomb_limit:
        raise ImageBombError(
            f"{path}: {width}x{height} pixels exceed Pillow's decompression-bomb limit of {bomb_limit}"
        )


@contextmanager
def _opened_image(path: Path) -> Iterator[Any]:
    """The image with its header read and nothing decoded; every failure becomes a :class:`MediaError`."""
    from PIL import Image, UnidentifiedImageError

    _require_file(path, "image")
    try:
        with Image.open(path) as image:
            _refuse_bomb(path, *image.size)
            yield image
    except MediaError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageBombError(f"{path}: {error}") from error
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise MediaError(f"{path}: could not decode image: {error}") from error


def image_size(path: str | Path) -> tuple[int, int]:
    """Width and height from the image header; :class:`ImageBombError` past Pillow's bomb limit."""
    with _opened_image(Path(path)) as image:
        return image.size


def load_image(path: str | Path, size: int) -> np.ndarray:
    """Decode an image as RGB uint8 [size,size,3] (never one that trips Pillow's bomb check)."""
    with _opened_image(Path(path)) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return _resize(array, size)


@contextmanager
def _opened_video(path: Path) -> Iterator[tuple[Any, Any]]:
    """The container and its first video stream; every failure becomes a :class:`MediaError`."""
    import av

    _require_file(path, "video")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: no video stream")
            yield container, container.streams.video[0]
    except MediaError:
        raise
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as error:
        raise MediaError(f"{path}: could not decode video: {error}") from error


def _frame_rate(stream: Any) -> Fraction | None:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else None


def _frame_count(container: Any, stream: Any) -> int:
    """Frames from the header, else counted from packets (demuxed, not decoded)."""
    if stream.frames > 0:
        return int(stream.frames)
    count = sum(1 for packet in container.demux(stream) if packet.size)
    container.seek(0)
    return count


def video_info(path: str | Path) -> VideoInfo:
    """Frame count, duration and frame size from the headers (and packets); no frame is decoded."""
    import av

    path = Path(path)
    with _opened_video(path) as (container, stream):
        frames, rate = _frame_count(container, stream), _frame_rate(stream)
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            seconds = container.duration / av.time_base
        else:
            seconds = float(frames / rate) if rate else 0.0
        return VideoInfo(frames, seconds, int(stream.codec_context.width), int(stream.codec_context.height))


def _numbered_frames(container: Any, stream: Any, rate: Fraction | None) -> Iterator[tuple[int, Any]]:
    """Decoded frames from the current position with their frame index (from the timestamps)."""
    start = stream.start_time or 0
    for count, frame in enumerate(container.decode(stream)):
        if frame.pts is None or rate is None or stream.time_base is None:
            yield count, frame
        else:
            yield round((frame.pts - start) * stream.time_base * rate), frame


def _frames_at(container: Any, stream: Any, targets: Sequence[int]) -> dict[int, np.ndarray]:
    """The frames at ascending ``targets``: decode on to near ones, seek (to a keyframe) for far ones.

    Past the end of the stream, the remaining targets get the last decoded frame.
    """
    rate = _frame_rate(stream)
    seek_gap = int(SEEK_GAP_SECONDS * rate) if rate and stream.time_base else None
    found: dict[int, np.ndarray] = {}
    decoded: Iterator[tuple[int, Any]] | None = None
    position, last = -1, None
    for target in targets:
        if decoded is None or (seek_gap is not None and target - position > seek_gap):
            if seek_gap is not None and target > seek_gap:
                offset = int(Fraction(target) / rate / stream.time_base)
                container.seek((stream.start_time or 0) + offset, stream=stream, backward=True)
            decoded = _numbered_frames(container, stream, rate)
        for position, frame in decoded:
            last = frame
            if position >= target:
                break
        if last is None:
            return found
        found[target] = last.to_ndarray(format="rgb24")
    return found


def _decode_chosen(path: str | Path, choose: Callable[[int], Sequence[int]]) -> np.ndarray:
    """Frames at ``choose(frame_count)`` (any order, repeats allowed) as uint8 [N,H,W,3]."""
    path = Path(path)
    with _opened_video(path) as (container, stream):
        total = _frame_count(container, stream)
        indices = [int(i) for i in choose(total)] if total > 0 else []
        found = _frames_at(container, stream, sorted(set(indices)))
    if not found:
        raise MediaError(f"{path}: video has no decodable frames")
    return np.stack([found[i] for i in indices])


def decode_frames(path: str | Path, indices: Sequence[int]) -> np.ndarray:
    """The frames at ``indices`` as RGB uint8 [N,H,W,3], decoding only up to (or seeking to) each one."""
    return _decode_chosen(path, lambda total: indices)


def decode_video(path: str | Path) -> np.ndarray:
    """Decode every frame of a (short) video as RGB uint8 [T,H,W,3]."""
    return _decode_chosen(path, range)


def uniform_frame_indices(total: int, num_frames: int) -> np.ndarray:
    """Centres of ``num_frames`` equal segments of a ``total``-frame video."""
    if total < 1 or num_frames < 1:
        raise ValueError(f"need total >= 1 and num_frames >= 1, got {total}, {num_frames}")
    return np.minimum(((np.arange(num_frames) + 0.5) * total / num_frames).astype(np.int64), total - 1)


def sample_frames(video_path: str | Path, num_frames: int, size: int) -> np.ndarray:
    """``num_frames`` uniformly sampled frames, resized: uint8 [N,size,size,3]. Only those are decoded."""
    frames = _decode_chosen(video_path, lambda total: uniform_frame_indices(total, num_frames))
    return np.stack([_resize(frame, size) for frame in frames])


def random_frame(video_path: str | Path, rng: np.random.Generator, size: int) -> np.ndarray:
    """One frame drawn uniformly at random from the video, resized: uint8 [size,size,3]."""
    frames = _decode_chosen(video_path, lambda total: [int(rng.integers(total))])
    return _resize(frames[0], size)

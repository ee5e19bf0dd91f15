from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from serendipity.media_io import (
    ImageBombError,
    MediaError,
    decode_frames,
    image_size,
    load_image,
    random_frame,
    sample_frames,
    uniform_frame_indices,
    video_info,
    write_image,
    write_video,
)


def _numbered_frames(count: int, size: int = 32) -> np.ndarray:
    """Frame t is a flat grey of brightness 10 + 15 t, so decoded frames can be identified."""
    values = 10 + 15 * np.arange(count, dtype=np.uint8)
    return np.broadcast_to(values[:, None, None, None], (count, size, size, 3)).copy()


def _frame_number(frame: np.ndarray) -> int:
    return int(round((float(frame.mean()) - 10) / 15))


@pytest.fixture
def numbered_video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "clip.mp4", _numbered_frames(16), fps=5)


def test_video_roundtrip_samples_uniform_frames(numbered_video: Path) -> None:
    frames = sample_frames(numbered_video, num_frames=4, size=32)
    assert frames.shape == (4, 32, 32, 3) and frames.dtype == np.uint8
    assert [_frame_number(f) for f in frames] == [2, 6, 10, 14]
    assert [_frame_number(f) for f in sample_frames(numbered_video, 1, 32)] == [8]


def test_sample_frames_resizes(numbered_video: Path) -> None:
    assert sample_frames(numbered_video, 2, size=16).shape == (2, 16, 16, 3)


def test_uniform_indices_cover_the_video() -> None:
    assert uniform_frame_indices(16, 8).tolist() == [1, 3, 5, 7, 9, 11, 13, 15]
    assert uniform_frame_indices(3, 4).tolist() == [0, 1, 1, 2]
    with pytest.raises(ValueError):
        uniform_frame_indices(0, 4)


def test_random_frame_is_reproducible(numbered_video: Path) -> None:
    first = random_frame(numbered_video, np.random.default_rng(5), 32)
    second = random_frame(numbered_video, np.random.default_rng(5), 32)
    assert first.shape == (32, 32, 3)
    np.testing.assert_array_equal(first, second)
    drawn = {_frame_number(random_frame(numbered_video, np.random.default_rng(s), 32)) for s in range(30)}
    assert len(drawn) > 5


def test_image_roundtrip_and_resize(tmp_path: Path) -> None:
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    image[:16] = 200
    path = write_image(tmp_path / "thumb.png", image)
    np.testing.assert_array_equal(load_image(path, 32), image)
    small = load_image(path, 8)
    assert small.shape == (8, 8, 3) and small[0, 0, 0] > 150 and small[-1, 0, 0] < 50
    assert not list(tmp_path.glob(".*tmp*"))


@pytest.mark.parametrize("reader", ["image", "video"])
def test_missing_file_is_a_clear_error(tmp_path: Path, reader: str) -> None:
    path = tmp_path / "absent.bin"
    with pytest.raises(MediaError, match=rf"{path}.*not found"):
        load_image(path, 32) if reader == "image" else sample_frames(path, 4, 32)


@pytest.mark.parametrize("name", ["broken.png", "broken.mp4"])
def test_corrupt_file_is_a_clear_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"definitely not media" * 20)
    with pytest.raises(MediaError, match=rf"{path}: could not decode"):
        load_image(path, 32) if name.endswith("png") else sample_frames(path, 4, 32)


def test_truncated_video_is_a_clear_error(tmp_path: Path, numbered_video: Path) -> None:
    path = tmp_path / "truncated.mp4"
    path.write_bytes(numbered_video.read_bytes()[:200])
    with pytest.raises(MediaError, match=str(path)):
        sample_frames(path, 4, 32)


def test_directory_is_not_media(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="not a regular file"):
        load_image(tmp_path, 32)


def test_media_error_is_a_value_error() -> None:
    assert issubclass(MediaError, ValueError)


@pytest.mark.parametrize(
    "frames",
    [
        np.zeros((4, 32, 32), dtype=np.uint8),
        np.zeros((4, 32, 32, 3), dtype=np.float32),
        np.zeros((4, 31, 32, 3), dtype=np.uint8),
        np.zeros((0, 32, 32, 3), dtype=np.uint8),
    ],
)
def test_bad_frames_are_rejected(tmp_path: Path, frames: np.ndarray) -> None:
    with pytest.raises(MediaError, match="clip.mp4"):
        write_video(tmp_path / "clip.mp4", frames, fps=5)
    assert not (tmp_path / "clip.mp4").exists()


def test_video_info_reads_headers(numbered_video: Path) -> None:
    info = video_info(numbered_video)
    assert (info.frames, info.width, info.height) == (16, 32, 32)
    assert info.seconds == pytest.approx(16 / 5) and info.pixels_per_frame == 32 * 32


def test_frames_at_any_indices(numbered_video: Path) -> None:
    frames = decode_frames(numbered_video, [9, 3, 3, 40])  # past the end: the last frame
    assert [_frame_number(f) for f in frames] == [9, 3, 3, 15]


def test_sampling_a_long_video_seeks_instead_of_decoding_it_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import serendipity.media_io

    brightness = (np.arange(600) % 200).astype(np.uint8)
    frames = np.broadcast_to(brightness[:, None, None, None], (600, 32, 32, 3))
    path = write_video(tmp_path / "long.mp4", frames.copy(), fps=10)
    decoded = 0
    numbered_frames = serendipity.media_io._numbered_frames

    def counting(*args: object) -> Iterator[tuple[int, object]]:
        nonlocal decoded
        for numbered in numbered_frames(*args):
            decoded += 1
            yield numbered

    monkeypatch.setattr(serendipity.media_io, "_numbered_frames", counting)
    sampled = sample_frames(path, 4, 32)
    assert [float(f.mean()) for f in sampled] == pytest.approx([75, 25, 175, 125], abs=3)
    assert decoded < 0.8 * 600


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    from hostile_inputs import write_bomb_png

    path = write_bomb_png(tmp_path / "bomb.png")
    with pytest.raises(ImageBombError, match="decompression bomb"):
        load_image(path, 32)
    with pytest.raises(ImageBombError):
        image_size(path)
    assert issubclass(ImageBombError, MediaError)

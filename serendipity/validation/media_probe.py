"""Opening one media file within the limits, in a child process so a decoder that hangs or crashes costs
that file (its path is set to null with the reason), never the job.

:func:`probe_media_file` reads sizes and durations from the headers, then decodes one frame or the image;
:class:`MediaProber` runs a probe per file in a long-lived child process and stops (kills) it when the
probe outlasts ``limits.media_decode_timeout_s``; the next file gets a fresh child.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType

from serendipity.limits import InputLimitsConfig

UNREADABLE_IMAGE = "image does not decode"
UNREADABLE_VIDEO = "video does not open or has no frames"
FILE_TOO_LARGE = "file larger than limits.max_media_bytes"
VIDEO_TOO_LONG = "video longer than limits.max_video_seconds"
TOO_MANY_FRAMES = "video has more frames than limits.max_video_frames"
FRAME_TOO_LARGE = "more pixels per frame than limits.max_frame_pixels"
DECOMPRESSION_BOMB = "image trips Pillow's decompression-bomb check"
DECODE_TIMEOUT = "decoding took longer than limits.media_decode_timeout_s"
DECODER_CRASHED = "decoder crashed"

# A fresh child imports PyAV and Pillow before it answers; this bounds that start, not a probe.
CHILD_START_TIMEOUT_S = 120.0
READY = "ready"

MediaProbe = Callable[[Path, str, InputLimitsConfig], "str | None"]


def _unreadable(column: str) -> str:
    return UNREADABLE_VIDEO if column == "video_path" else UNREADABLE_IMAGE


def _video_problem(path: Path, limits: InputLimitsConfig) -> str | None:
    from serendipity.media import MediaError, decode_frames, video_info

    try:
        info = video_info(path)
        if info.seconds > limits.max_video_seconds:
            return VIDEO_TOO_LONG
        if info.frames > limits.max_video_frames:
            return TOO_MANY_FRAMES
        if info.pixels_per_frame > limits.max_frame_pixels:
            return FRAME_TOO_LARGE
        first = decode_frames(path, [0])[0]
    except MediaError:
        return UNREADABLE_VIDEO
    return FRAME_TOO_LARGE if first.shape[0] * first.shape[1] > limits.max_frame_pixels else None


def _image_problem(path: Path, limits: InputLimitsConfig) -> str | None:
    from serendipity.media import ImageBombError, MediaError, image_size, load_image

    try:
        width, height = image_size(path)
        if width * height > limits.max_frame_pixels:
            return FRAME_TOO_LARGE
        load_image(path, 16)  # readability needs a decode; a small size keeps it cheap
    except ImageBombError:
        return DECOMPRESSION_BOMB
    except MediaError:
        return UNREADABLE_IMAGE
    return None


def probe_media_file(path: Path, column: str, limits: InputLimitsConfig) -> str | None:
    """Why the regular file ``path`` (a ``thumbnail_path`` or ``video_path``) is not usable, or None."""
    if path.stat().st_size > limits.max_media_bytes:
        return FILE_TOO_LARGE
    return _video_problem(path, limits) if column == "video_path" else _image_problem(path, limits)


def _serve(connection: Connection, probe: MediaProbe, limits: InputLimitsConfig) -> None:
    """The child's loop: answer each (path, column) with the probe's reason (or None) until EOF."""
    import av  # noqa: F401 (imported before READY, so a probe's time is spent probing)
    import PIL.Image  # noqa: F401

    connection.send(READY)
    while True:
        try:
            path, column = connection.recv()
        except EOFError:
            return
        try:
            answer = probe(Path(path), column, limits)
        except Exception:  # noqa: BLE001 (any failure of a hostile file is that file's problem)
            answer = _unreadable(column)
        connection.send(answer)


class MediaProber:
    """Probes files one at a time in a child process, within ``limits.media_decode_timeout_s`` each."""

    def __init__(self, limits: InputLimitsConfig, probe: MediaProbe = probe_media_file) -> None:
        self.limits = limits
        self.probe = probe
        self._process: multiprocessing.process.BaseProcess | None = None
        self._connection: Connection | None = None

    def __enter__(self) -> MediaProber:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _start(self) -> Connection:
        context = multiprocessing.get_context("spawn")  # no fork of a process holding threads (Spark, torch)
        ours, theirs = context.Pipe()
        self._process = context.Process(target=_serve, args=(theirs, self.probe, self.limits), daemon=True)
        self._process.start()
        theirs.close()
        self._connection = ours
        if not ours.poll(CHILD_START_TIMEOUT_S) or ours.recv() != READY:
            self.close()
            raise RuntimeError(f"the media probe process did not start within {CHILD_START_TIMEOUT_S} s")
        return ours

    def problem(self, path: Path, column: str) -> str | None:
        """The probe's reason for ``path`` (None when usable); a timeout or crash is the reason too."""
        connection = self._connection or self._start()
        try:
            connection.send((str(path), column))
            if connection.poll(self.limits.media_decode_timeout_s):
                return connection.recv()
        except (EOFError, BrokenPipeError):
            self.close()
            return DECODER_CRASHED
        self.close()
        return DECODE_TIMEOUT

    def close(self) -> None:
        """Stop the child (killed: it may be stuck in a decoder); a later probe starts a new one."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join()
            self._process = None

"""Opening one media file within the limits, in a child process so a decoder that hangs or crashes costs
that file (its path is set to null with the reason), never the job.

:func:`probe_media_file` reads sizes and durations from the headers, then decodes one frame or the image;
:class:`MediaProber` runs a probe per file in a long-lived child Python process (JSON lines over its
stdin/stdout) and kills it when a probe outlasts ``limits.media_decode_timeout_s``; the next file gets a
fresh child. A plain subprocess, not multiprocessing: it never re-imports the caller's main module.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from serendipity.config import InputLimitsConfig

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
    from serendipity.media_io import MediaError, decode_frames, video_info

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
    from serendipity.media_io import ImageBombError, MediaError, image_size, load_image

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


def _reference(probe: MediaProbe) -> str:
    return f"{probe.__module__}:{probe.__qualname__}"


def serve(probe_reference: str, limits_json: str) -> None:
    """The child's loop: answer each request line with the probe's reason (or null) until stdin closes."""
    module, name = probe_reference.split(":")
    probe: MediaProbe = getattr(importlib.import_module(module), name)
    limits = InputLimitsConfig.model_validate_json(limits_json)
    import av  # noqa: F401 (imported before READY, so a probe's time is spent probing)
    import PIL.Image  # noqa: F401

    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not break the protocol
    answers.write(READY + "\n")
    answers.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = probe(Path(request["path"]), request["column"], limits)
        except Exception:  # noqa: BLE001 (any failure of a hostile file is that file's problem)
            answer = _unreadable(request["column"])
        answers.write(json.dumps({"problem": answer}) + "\n")
        answers.flush()


class MediaProber:
    """Probes files one at a time in a child process, within ``limits.media_decode_timeout_s`` each."""

    def __init__(self, limits: InputLimitsConfig, probe: MediaProbe = probe_media_file) -> None:
        self.limits = limits
        self.probe = probe
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> MediaProber:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _start(self) -> subprocess.Popen[str]:
        code = "import sys; from serendipity.validation.media_probe import serve; serve(*sys.argv[1:])"
        arguments = [_reference(self.probe), self.limits.model_dump_json()]
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self._process = subprocess.Popen(
            [sys.executable, "-c", code, *arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=environment,
            text=True,
        )
        try:
            started = self._read_line(CHILD_START_TIMEOUT_S) == READY
        except EOFError:
            started = False
        if not started:
            self.close()
            raise RuntimeError(f"the media probe process did not start within {CHILD_START_TIMEOUT_S} s")
        return self._process

    def _read_line(self, timeout_s: float) -> str | None:
        """The child's next line, None after ``timeout_s``; EOFError when the child is gone."""
        assert self._process is not None and self._process.stdout is not None
        readable, _, _ = select.select([self._process.stdout], [], [], timeout_s)
        if not readable:
            return None
        line = self._process.stdout.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")

    def problem(self, path: Path, column: str) -> str | None:
        """The probe's reason for ``path`` (None when usable); a timeout or crash is the reason too."""
        process = self._process or self._start()
        assert process.stdin is not None
        try:
            process.stdin.write(json.dumps({"path": str(path), "column": column}) + "\n")
            process.stdin.flush()
            line = self._read_line(self.limits.media_decode_timeout_s)
        except (EOFError, BrokenPipeError):
            self.close()
            return DECODER_CRASHED
        if line is None:
            self.close()
            return DECODE_TIMEOUT
        return json.loads(line)["problem"]

    def close(self) -> None:
        """Stop the child (killed: it may be stuck in a decoder); a later probe starts a new one."""
        if self._process is None:
            return
        self._process.kill()
        self._process.wait()
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                stream.close()
        self._process = None

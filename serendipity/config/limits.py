"""The ``limits:`` section: bounds on what a dataset may hold, enforced by validation.

Media over a limit (or that trip Pillow's decompression-bomb check, or whose decoding outlasts the time
limit or crashes) get their path set to null with the reason, so the item keeps a text-only prompt.
Over-long titles and texts are truncated with a warning, or their rows quarantined, as configured.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from serendipity.config.base import Section


class InputLimitsConfig(Section):
    max_media_bytes: int = Field(200 * 2**20, ge=1)  # per thumbnail or video file
    max_video_seconds: float = Field(600.0, gt=0)
    max_video_frames: int = Field(36_000, ge=1)
    max_frame_pixels: int = Field(4096 * 4096, ge=1)  # width x height of a video frame or an image
    media_decode_timeout_s: float = Field(30.0, gt=0)  # per file; a decoder past it is stopped
    max_title_chars: int = Field(1_000, ge=1)
    max_text_chars: int = Field(100_000, ge=1)
    over_long_text: Literal["truncate", "quarantine"] = "truncate"

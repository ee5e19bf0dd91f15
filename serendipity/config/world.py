"""The ``world:`` section: the synthetic short-video world."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from serendipity.config.base import Branching, Fraction, Section


class WorldConfig(Section):
    """Synthetic short-video world (see ``serendipity.world``)."""

    items: int = Field(2000, ge=10)
    users: int = Field(500, ge=1)
    interactions: int = Field(100_000, ge=1)
    branching: Branching = (3, 3, 3, 2)
    seed: int = 0
    media: Literal["all", "popular", "none"] = "all"
    media_popular_share: Fraction = 0.9  # with media=popular: items covering this impression share
    frame_size: int = Field(32, ge=16, le=256)
    video_frames: int = Field(16, ge=2, le=120)
    video_fps: int = Field(5, ge=1, le=60)
    days: int = Field(30, ge=1)
    media_workers: int = Field(1, ge=1)  # processes rendering and encoding media

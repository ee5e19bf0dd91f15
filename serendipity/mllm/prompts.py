"""Prompts of the paper's offline study: what goes in (text, frames, a thumbnail) and the target text.

Media are decoded in a separate CPU step (``item_media_from_row``) into an ``ItemMedia``; a prompt is
then built from it for any processor: with the model's chat template when it has one (content parts
image/video/text), else as image placeholders followed by the text. The sampled frames of the video
styles go in as ONE video when the processor takes video (Qwen2-VL, LLaVA-OneVision), else as images.
Missing or corrupt media fall back to the text prompt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from serendipity.mllm.constants import ANSWER_MARKER, REASONING_MARKER
from serendipity.mllm.model import image_placeholder, takes_video
from serendipity.schema import LEVEL_COLUMNS
from serendipity.tree import ClusterTree


class PromptStyle(StrEnum):
    TEXT = "text"  # title + the item's own cluster description, no media
    VIDEO = "video"  # N uniformly sampled frames only
    VIDEO_TEXT = "video_text"  # N frames + title, direct answer
    VIDEO_COT = "video_cot"  # N frames + title, chain of thought
    THUMBNAIL_COT = "thumbnail_cot"  # the thumbnail + title, chain of thought
    FRAME_COT = "frame_cot"  # one random frame + title, chain of thought

    @property
    def uses_video(self) -> bool:
        return self in (
            PromptStyle.VIDEO,
            PromptStyle.VIDEO_TEXT,
            PromptStyle.VIDEO_COT,
            PromptStyle.FRAME_COT,
        )

    @property
    def samples_frames(self) -> bool:
        """N frames sampled across the video (the styles a video-taking processor gets as one video)."""
        return self in (PromptStyle.VIDEO, PromptStyle.VIDEO_TEXT, PromptStyle.VIDEO_COT)

    @property
    def uses_media(self) -> bool:
        return self is not PromptStyle.TEXT

    @property
    def chain_of_thought(self) -> bool:
        return self in (PromptStyle.VIDEO_COT, PromptStyle.THUMBNAIL_COT, PromptStyle.FRAME_COT)

    @property
    def shows_title(self) -> bool:
        return self is not PromptStyle.VIDEO


TASK = "Name the nearby topic this viewer has not explored yet."
# Titles longer than this many tokens (of the model's tokenizer) are cut, so a prompt stays bounded.
MAX_TITLE_TOKENS = 128
# A title is first cut to this many characters per allowed token, so a huge one never reaches the tokenizer.
CHARS_PER_TOKEN_BOUND = 32
COT_TASK = "Say what the video shows first, then name the nearby topic this viewer has not explored yet."


@dataclass
class ItemMedia:
    """One item's decoded inputs: the images for its prompt (possibly none) and its cluster path."""

    item_id: int
    title: str
    cluster_path: tuple[int, ...]  # cluster ids at levels 1..4
    images: list[np.ndarray] = field(default_factory=list)
    media_fallback: bool = False
    fallback_reason: str | None = None

    def cluster_at(self, level: int) -> int:
        return self.cluster_path[level - 1]


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt: text with one placeholder per image (or one for the video), for the processor."""

    text: str
    images: list[np.ndarray]
    style: PromptStyle  # the style actually used (TEXT after a media fallback)
    media_fallback: bool
    as_video: bool = False  # ``images`` are the frames of one video (``videos=`` for the processor)


def _row_value(row: Mapping[str, Any], key: str) -> Any:
    value = row.get(key)
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else value


def _decode_images(
    row: Mapping[str, Any], dataset_dir: Path, style: PromptStyle, num_frames: int, image_size: int
) -> list[np.ndarray]:
    from serendipity.media_io import MediaError, load_image, random_frame, sample_frames

    column = "video_path" if style.uses_video else "thumbnail_path"
    relative = _row_value(row, column)
    if not relative:
        raise MediaError(f"item {row.get('item_id')}: no {column}")
    path = dataset_dir / str(relative)
    if style is PromptStyle.THUMBNAIL_COT:
        return [load_image(path, image_size)]
    if style is PromptStyle.FRAME_COT:
        rng = np.random.default_rng(int(row.get("item_id", 0)))
        return [random_frame(path, rng, image_size)]
    return list(sample_frames(path, num_frames, image_size))


def item_media_from_row(
    item_row: Mapping[str, Any],
    dataset_dir: str | Path,
    style: PromptStyle | str,
    num_frames: int,
    image_size: int,
) -> ItemMedia:
    """Decode what ``style`` needs for one items-table row; media problems become a text fallback."""
    from serendipity.media_io import MediaError

    style = PromptStyle(style)
    media = ItemMedia(
        item_id=int(item_row["item_id"]),
        title=str(_row_value(item_row, "title") or ""),
        cluster_path=tuple(int(item_row[c]) for c in LEVEL_COLUMNS),
    )
    if not style.uses_media:
        return media
    try:
        media.images = _decode_images(item_row, Path(dataset_dir), style, num_frames, image_size)
    except (MediaError, OSError, ValueError) as error:
        media.media_fallback = True
        media.fallback_reason = str(error)
    return media


def truncate_to_tokens(text: str, processor: Any, max_tokens: int) -> str:
    """The longest prefix of ``text`` (at a token boundary) with at most ``max_tokens`` tokens."""
    from serendipity.mllm.generation import resolve_tokenizer

    tokenizer = resolve_tokenizer(processor)
    text = text[: max_tokens * CHARS_PER_TOKEN_BOUND]
    try:
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    except NotImplementedError:  # slow tokenizers have no offsets: decode the kept tokens instead
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return text if len(ids) <= max_tokens else str(tokenizer.decode(ids[:max_tokens]))
    return text if len(offsets) <= max_tokens else text[: offsets[max_tokens - 1][1]]


def _prompt_body(media: ItemMedia, style: PromptStyle, tree: ClusterTree, level: int, title: str) -> str:
    lines = []
    if style.shows_title:
        lines.append(f"Title: {title}")
    if style is PromptStyle.TEXT:
        lines.append(f"Topic: {tree.description(media.cluster_at(level))}")
    lines.append(COT_TASK if style.chain_of_thought else TASK)
    return "\n".join(lines) + "\n"


def render(processor: Any, body: str, num_images: int, *, video: bool = False) -> str:
    """Prompt text for ``body`` after ``num_images`` images (or one video), with the model's chat
    template if any; without one, image placeholders then the text (LLaVA-1.5, PaliGemma)."""
    if getattr(processor, "chat_template", None):
        media = [{"type": "video"}] if video else [{"type": "image"} for _ in range(num_images)]
        messages = [{"role": "user", "content": [*media, {"type": "text", "text": body}]}]
        return str(processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
    if video:
        raise ValueError(f"processor {type(processor).__name__} has no chat template to place a video in")
    return image_placeholder(processor) * num_images + ("\n" if num_images else "") + body


def build_prompt(
    media: ItemMedia,
    style: PromptStyle | str,
    tree: ClusterTree,
    level: int,
    processor: Any,
    max_title_tokens: int = MAX_TITLE_TOKENS,
) -> Prompt:
    """The prompt for one item; media styles without usable media fall back to the text prompt.

    The title is cut to ``max_title_tokens`` tokens of the processor's tokenizer.
    """
    style = PromptStyle(style)
    fallback = style.uses_media and (media.media_fallback or not media.images)
    used = PromptStyle.TEXT if fallback else style
    images = [] if used is PromptStyle.TEXT else list(media.images)
    title = truncate_to_tokens(media.title, processor, max_title_tokens) if used.shows_title else ""
    as_video = bool(images) and used.samples_frames and takes_video(processor)
    text = render(processor, _prompt_body(media, used, tree, level, title), len(images), video=as_video)
    return Prompt(text=text, images=images, style=used, media_fallback=fallback, as_video=as_video)


def reasoning_text(tree: ClusterTree, own_cluster: int) -> str:
    """What the video is: its own level-L cluster in its level-(L-1) parent."""
    parent = tree.parent(own_cluster)
    where = f" in {tree.description(parent)}" if parent is not None else ""
    return f"{REASONING_MARKER} {tree.description(own_cluster)}{where}"


def answer_text(description: str) -> str:
    return f"{ANSWER_MARKER} {description}"


def target_text(style: PromptStyle | str, tree: ClusterTree, own_cluster: int, target_cluster: int) -> str:
    """The training target: CoT styles reason first, then every style ends with the answer line."""
    answer = answer_text(tree.description(target_cluster))
    if PromptStyle(style).chain_of_thought:
        return f"{reasoning_text(tree, own_cluster)}\n{answer}"
    return answer


def description_prompt(description: str, processor: Any) -> tuple[str, str]:
    """A recitation example (prompt, target) that teaches the model every cluster description verbatim."""
    return render(processor, f"Describe cluster: {description}\n", 0), answer_text(description)

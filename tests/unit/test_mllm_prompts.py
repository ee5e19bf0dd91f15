"""Prompts for every style, targets, media fallback and the masked training batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from serendipity.mllm.constants import ANSWER_MARKER, REASONING_MARKER
from serendipity.mllm.data import IGNORE_INDEX, encode, training_batch
from serendipity.mllm.data import SftExample as Example
from serendipity.mllm.model import image_placeholder
from serendipity.mllm.prompts import PromptStyle, build_prompt, item_media_from_row, target_text
from serendipity.mllm.tiny import build_tiny_model, dataset_texts
from serendipity.tree import ClusterTree

LEVEL = 3


@pytest.fixture(scope="module")
def processor(world_dataset: Path) -> Any:
    return build_tiny_model(dataset_texts(world_dataset))[1]


@pytest.fixture(scope="module")
def tree(world_dataset: Path) -> ClusterTree:
    return ClusterTree.load(world_dataset)


@pytest.fixture(scope="module")
def item_row(world_dataset: Path) -> dict[str, Any]:
    items = pd.read_parquet(world_dataset / "items.parquet")
    with_media = items[items["video_path"].notna() & items["thumbnail_path"].notna()]
    return with_media.iloc[0].to_dict()


@pytest.mark.parametrize("style", list(PromptStyle))
def test_prompt_of_every_style(
    style: PromptStyle, item_row: dict, world_dataset: Path, tree: ClusterTree, processor: Any
) -> None:
    media = item_media_from_row(item_row, world_dataset, style, num_frames=2, image_size=32)
    prompt = build_prompt(media, style, tree, LEVEL, processor)
    expected_images = {
        PromptStyle.TEXT: 0,
        PromptStyle.VIDEO: 2,
        PromptStyle.VIDEO_TEXT: 2,
        PromptStyle.VIDEO_COT: 2,
    }
    assert not prompt.media_fallback and prompt.style is style
    assert len(prompt.images) == expected_images.get(style, 1)
    assert prompt.text.count(image_placeholder(processor)) == len(prompt.images)
    assert all(image.shape == (32, 32, 3) for image in prompt.images)
    assert (item_row["title"] in prompt.text) == (style is not PromptStyle.VIDEO)
    own_description = tree.description(int(item_row["c3"]))
    assert (own_description in prompt.text) == (style is PromptStyle.TEXT)


def test_targets_mark_reasoning_and_answer(tree: ClusterTree) -> None:
    own = tree.at_level(LEVEL)[0]
    target = tree.siblings(own)[0]
    cot = target_text(PromptStyle.VIDEO_COT, tree, own, target)
    reasoning, answer = cot.split("\n")
    assert reasoning == f"{REASONING_MARKER} {tree.description(own)} in {tree.description(tree.parent(own))}"
    assert answer == f"{ANSWER_MARKER} {tree.description(target)}"
    assert target_text(PromptStyle.VIDEO_TEXT, tree, own, target) == answer
    assert REASONING_MARKER not in target_text(PromptStyle.TEXT, tree, own, target)


def test_missing_video_falls_back_to_text(
    item_row: dict, tmp_path: Path, tree: ClusterTree, processor: Any
) -> None:
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    for path in ("missing.mp4", "broken.mp4", None):
        media = item_media_from_row({**item_row, "video_path": path}, tmp_path, "video_cot", 4, 32)
        assert media.media_fallback and media.fallback_reason
        prompt = build_prompt(media, PromptStyle.VIDEO_COT, tree, LEVEL, processor)
        assert prompt.media_fallback and prompt.style is PromptStyle.TEXT and not prompt.images
        assert tree.description(int(item_row["c3"])) in prompt.text


def test_empty_title_and_masked_labels(
    item_row: dict, world_dataset: Path, tree: ClusterTree, processor: Any
) -> None:
    media = item_media_from_row({**item_row, "title": ""}, world_dataset, "video_cot", 2, 32)
    prompt = build_prompt(media, PromptStyle.VIDEO_COT, tree, LEVEL, processor)
    own = int(item_row["c3"])
    target = target_text(prompt.style, tree, own, tree.siblings(own)[0])
    encoded = encode(processor, prompt, target)
    target_ids = processor.tokenizer(target, add_special_tokens=False)["input_ids"]
    labelled = encoded["labels"][0][encoded["labels"][0] != IGNORE_INDEX].tolist()
    assert labelled == [*target_ids, processor.tokenizer.eos_token_id]
    assert encoded["input_ids"][0, -len(labelled) :].tolist() == labelled

    text_prompt = build_prompt(media, PromptStyle.TEXT, tree, LEVEL, processor)
    batch = training_batch(processor, [Example(prompt, target), Example(text_prompt, target)])
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["pixel_values"].shape[0] == 2  # only the video prompt brings images
    assert (batch["attention_mask"].sum(dim=1) < batch["input_ids"].shape[1]).any()

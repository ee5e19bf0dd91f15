"""Hostile inputs in a copy of the synthetic world: each is named in the validation report and quarantined
or truncated as configured; nothing valid is lost (usable + quarantined = input); nothing crashes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from hostile_inputs import (
    DECODE_TIMEOUT_S,
    HOSTILE_MEDIA,
    LIMITS,
    ONE_MB_TITLE,
    TEN_MB_TEXT,
    TEXT_ROW,
    TITLE_ROW,
    build_hostile_dataset,
    hanging_probe,
)

from serendipity.config import InputLimitsConfig
from serendipity.mllm.prompts import MAX_TITLE_TOKENS, ItemMedia, PromptStyle, build_prompt
from serendipity.mllm.tiny import build_tiny_model, dataset_texts
from serendipity.schema import DATASET_FILES, INTERACTIONS_FILE, ITEMS_FILE, QUARANTINE_REASON, QUARANTINE_ROW
from serendipity.tree import ClusterTree
from serendipity.validation import validate_dataset, write_validation
from serendipity.validation.media_paths import MEDIA_PATH
from serendipity.validation.rules import over_long_check
from serendipity.validation.text import truncated_reason


@pytest.fixture
def hostile_dataset(world_dataset: Path, tmp_path: Path) -> Path:
    return build_hostile_dataset(world_dataset, tmp_path / "dataset")


def _validated(dataset: Path, out: Path, limits: InputLimitsConfig) -> tuple[dict[str, Any], Path]:
    started = time.monotonic()
    result = validate_dataset(dataset, limits, media_probe=hanging_probe)
    assert time.monotonic() - started < 10 * DECODE_TIMEOUT_S  # the hanging file was given up on
    write_validation(result, out)
    return json.loads((out / "validation_report.json").read_text()), out


def _problem(report: dict[str, Any], column: str, reason: str) -> dict[str, Any]:
    matching = [p for p in report["problems"] if p["column"] == column and p["reason"] == reason]
    assert len(matching) == 1, [p["message"] for p in report["problems"]]
    return matching[0]


def _assert_nothing_lost(dataset: Path, out: Path) -> None:
    for file in DATASET_FILES:
        usable, quarantined = pq.read_table(out / file), pq.read_table(out / "quarantine" / file)
        assert usable.num_rows + quarantined.num_rows == pq.read_metadata(dataset / file).num_rows, file


def _assert_media_quarantined(report: dict[str, Any], out: Path, world_dataset: Path) -> None:
    """Each hostile file is named with its reason; its item stays usable with a null path (text-only
    prompt); every world media path is kept."""
    usable = pq.read_table(out / ITEMS_FILE).to_pandas().set_index("item_id")
    records = pq.read_table(out / "quarantine" / "media.parquet").to_pandas()
    world = pq.read_table(world_dataset / ITEMS_FILE).to_pandas().set_index("item_id")
    assert sorted(records[QUARANTINE_ROW]) == sorted(h.row for h in HOSTILE_MEDIA)
    for hostile in HOSTILE_MEDIA:
        problem = _problem(report, hostile.column, f"{hostile.reason} (path set to null)")
        assert problem["example_rows"] == [hostile.row] and problem["file"] == ITEMS_FILE
        assert hostile.file_name in problem["message"]
        record = records.loc[records[QUARANTINE_ROW] == hostile.row].iloc[0]
        assert record[QUARANTINE_REASON] == hostile.reason and hostile.file_name in record[MEDIA_PATH]
        assert pd.isna(usable.loc[record["item_id"], hostile.column])
    hostile_cells = {(int(world.index[h.row]), h.column) for h in HOSTILE_MEDIA}
    for column in ("thumbnail_path", "video_path"):
        for item_id, path in world[column].dropna().items():
            if (item_id, column) not in hostile_cells and item_id in usable.index:
                assert usable.loc[item_id, column] == path


def test_over_long_text_is_truncated_with_a_warning(
    hostile_dataset: Path, world_dataset: Path, tmp_path: Path
) -> None:
    report, out = _validated(hostile_dataset, tmp_path / "validated", LIMITS)
    assert not report["fatal"]
    _assert_nothing_lost(hostile_dataset, out)
    _assert_media_quarantined(report, out, world_dataset)
    assert all(counts["quarantined_rows"] == 0 for counts in report["files"].values())
    usable = pq.read_table(out / ITEMS_FILE).to_pandas()
    assert usable.loc[TITLE_ROW, "title"] == ONE_MB_TITLE[: LIMITS.max_title_chars]
    assert usable.loc[TEXT_ROW, "text"] == TEN_MB_TEXT[: LIMITS.max_text_chars]
    for column, row in (("title", TITLE_ROW), ("text", TEXT_ROW)):
        problem = _problem(report, column, truncated_reason(column))
        assert problem["severity"] == "warning" and problem["count"] == 1 and problem["example_rows"] == [row]
        assert len(problem["message"]) < 500  # the value is described, not copied


def test_over_long_text_can_be_quarantined(
    hostile_dataset: Path, world_dataset: Path, tmp_path: Path
) -> None:
    limits = LIMITS.model_copy(update={"over_long_text": "quarantine"})
    report, out = _validated(hostile_dataset, tmp_path / "validated", limits)
    _assert_nothing_lost(hostile_dataset, out)
    _assert_media_quarantined(report, out, world_dataset)
    quarantined = pq.read_table(out / "quarantine" / ITEMS_FILE).to_pandas().set_index(QUARANTINE_ROW)
    assert sorted(quarantined.index) == [TITLE_ROW, TEXT_ROW]
    for column, row in (("title", TITLE_ROW), ("text", TEXT_ROW)):
        reason = over_long_check(column).reason
        assert quarantined.loc[row, QUARANTINE_REASON] == reason
        assert _problem(report, column, reason)["example_rows"] == [row]
    items = pq.read_table(hostile_dataset / ITEMS_FILE).to_pandas()
    gone = set(items.loc[[TITLE_ROW, TEXT_ROW], "item_id"])
    logs = pq.read_table(hostile_dataset / INTERACTIONS_FILE).to_pandas()
    assert report["files"][INTERACTIONS_FILE]["quarantined_rows"] == int(logs["item_id"].isin(gone).sum())


def test_prompt_title_is_cut_by_tokens(world_dataset: Path) -> None:
    processor = build_tiny_model(dataset_texts(world_dataset))[1]
    tree = ClusterTree.load(world_dataset)
    path = tuple(tree.path(tree.leaves()[0]))
    media = ItemMedia(item_id=1, title=ONE_MB_TITLE, cluster_path=path)
    prompt = build_prompt(media, PromptStyle.VIDEO_COT, tree, 3, processor)
    assert prompt.media_fallback and prompt.style is PromptStyle.TEXT  # no media: the text-only prompt
    title_tokens = processor.tokenizer(ONE_MB_TITLE[:10_000], add_special_tokens=False)["input_ids"]
    assert len(title_tokens) > MAX_TITLE_TOKENS
    prompt_tokens = processor.tokenizer(prompt.text)["input_ids"]
    assert len(prompt_tokens) < MAX_TITLE_TOKENS + 100
    short = build_prompt(ItemMedia(2, "a short title", path), PromptStyle.TEXT, tree, 3, processor)
    assert "Title: a short title\n" in short.text

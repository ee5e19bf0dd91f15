"""The inference store: content hashes, planning against the manifest, part files and compaction."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from serendipity.inference import InferenceStore, append_audit, content_hashes, prediction_rows
from serendipity.layout import WorkLayout
from serendipity.mllm.generation import Prediction
from serendipity.schema import SERENDIPITY_SCHEMA

STAMP = pd.Timestamp("2026-01-01", tz="UTC")


@pytest.fixture
def store(tmp_path: Path) -> InferenceStore:
    return InferenceStore.of(WorkLayout(tmp_path / "work"))


@pytest.fixture
def items(tmp_path: Path) -> pd.DataFrame:
    media = tmp_path / "dataset" / "media"
    media.mkdir(parents=True)
    for item_id in (1, 2, 3):
        (media / f"{item_id}.mp4").write_bytes(bytes([item_id]) * 64)
    return pd.DataFrame(
        {
            "item_id": [1, 2, 3],
            "title": ["a", "b", None],
            "video_path": [f"media/{i}.mp4" for i in (1, 2, 3)],
            **{f"c{level}": [level, level, level + 10] for level in (1, 2, 3, 4)},
        }
    )


def hashed(items: pd.DataFrame, tmp_path: Path) -> pd.DataFrame:
    return items.assign(content_hash=content_hashes(items, tmp_path / "dataset").astype(str))


def results(
    item_ids: list[int], hashes: list[str], version: str, stamp: pd.Timestamp = STAMP
) -> pd.DataFrame:
    ranked = [[Prediction(7, "seven", -0.5, "it shows a cat"), Prediction(8, "eight", -0.9, "")]] * len(
        item_ids
    )
    rows, errors = prediction_rows(
        item_ids, hashes, ranked, [False] * len(item_ids), version, "video_cot", stamp
    )
    assert errors.empty
    return rows


def test_content_hash_follows_text_cluster_path_and_media_bytes(items, tmp_path) -> None:
    before = content_hashes(items, tmp_path / "dataset")
    assert before.is_unique
    retitled = items.assign(title=["a", "changed", None])
    assert (content_hashes(retitled, tmp_path / "dataset") != before).tolist() == [False, True, False]
    (tmp_path / "dataset" / "media" / "3.mp4").write_bytes(b"re-encoded")
    assert (content_hashes(items, tmp_path / "dataset") != before).tolist() == [False, False, True]
    current = content_hashes(items, tmp_path / "dataset")
    moved = items.assign(c4=[4, 5, 14])
    assert (content_hashes(moved, tmp_path / "dataset") != current).tolist() == [False, True, False]


def test_plan_skips_done_items_counts_parts_and_redoes_all_for_a_new_version(store, items, tmp_path) -> None:
    corpus = hashed(items, tmp_path)
    assert store.plan(corpus, "v1")["item_id"].tolist() == [1, 2, 3]
    store.write_part(results([1], corpus["content_hash"][:1].tolist(), "v1"), pd.DataFrame())
    assert store.plan(corpus, "v1")["item_id"].tolist() == [2, 3], "a part file counts as done"
    store.compact()
    assert not store.pending_parts()
    assert store.plan(corpus, "v1")["item_id"].tolist() == [2, 3]
    assert store.plan(corpus, "v2")["item_id"].tolist() == [1, 2, 3]
    changed = hashed(items.assign(title=["new", "b", None]), tmp_path)
    assert store.plan(changed, "v1")["item_id"].tolist() == [1, 2, 3]


def test_compaction_keeps_the_latest_row_per_item_and_clears_fixed_errors(store, items, tmp_path) -> None:
    hashes = hashed(items, tmp_path)["content_hash"].tolist()
    failure = pd.DataFrame(
        {
            "item_id": [2],
            "content_hash": [hashes[1]],
            "model_version": ["v1"],
            "reason": ["prediction failed: RuntimeError: boom"],
            "event_timestamp": [STAMP],
        }
    )
    store.write_part(results([1], hashes[:1], "v1"), failure)
    assert store.compact() == (1, 1)
    later = STAMP + pd.Timedelta(hours=1)
    store.write_part(results([1, 2], hashes[:2], "v2", later), pd.DataFrame())
    assert store.compact() == (2, 0)
    output = pq.read_table(store.output_path)
    assert output.schema.remove_metadata() == SERENDIPITY_SCHEMA
    frame = output.to_pandas()
    assert frame["item_id"].tolist() == [1, 2] and (frame["model_version"] == "v2").all()
    assert frame["alternatives"].map(list).tolist() == [[7, 8], [7, 8]]
    manifest = pq.read_table(store.manifest_path).to_pandas()
    assert sorted(zip(manifest["item_id"], manifest["model_version"], strict=True)) == [(1, "v2"), (2, "v2")]
    assert store.compact() == (2, 0), "compaction is idempotent"


def test_prediction_rows_send_answers_naming_no_cluster_to_errors() -> None:
    ranked = [
        [Prediction(None, "no such topic", -1.0, "")],
        [Prediction(None, "x", -2.0, ""), Prediction(5, "five", -3.0, "r")],
    ]
    rows, errors = prediction_rows([1, 2], ["h1", "h2"], ranked, [False, True], "v1", "text", STAMP)
    assert rows["item_id"].tolist() == [2] and rows["serendipitous_cluster"].tolist() == [5]
    assert rows["media_fallback"].tolist() == [True] and rows["alternatives"].tolist() == [[5]]
    assert errors["item_id"].tolist() == [1] and "no such topic" in errors["reason"].iloc[0]


def test_audit_log_appends_one_line_per_item(tmp_path) -> None:
    path = tmp_path / "audit.tsv"
    append_audit(path, [1, 2], "v1")
    append_audit(path, [2], "v1")
    assert path.read_text().splitlines() == ["1\tv1", "2\tv1", "2\tv1"]

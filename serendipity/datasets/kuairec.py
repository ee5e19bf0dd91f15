"""KuaiRec 2.0 item side (captions + 3-level categories) into the data contract.

* ``kuairec_caption_category.csv`` -> items. A few captions hold a bare carriage return that
  splits their record in two; it is replaced by a space before parsing (counted in the notes).
* ``title`` = the caption (cut at 80 characters), else the cover text, else ``video <id>``;
  ``text`` = caption, cover text and topic tags. No media in this copy (null paths).
* Tree: the real first > second > third level categories; a path stops at its first ``UNKNOWN``
  level and is padded with ``(general)`` children to 4 levels, so level 4 is always a single
  ``(general)`` child of its level-3 cluster (see :mod:`serendipity.datasets.paths`). Videos whose
  first-level category is ``UNKNOWN`` are quarantined (no topic to place them in).
* This copy ships no interactions: ``interactions.parquet`` is empty but valid.
* No upload times either: ``created_at`` is the start of KuaiRec's collection window
  (2020-07-05 UTC) unless another time is given.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from serendipity.datasets.common import (
    DatasetTables,
    IngestSummary,
    Quarantine,
    check_output_dir,
    empty_interactions,
    parse_int,
    require_columns,
    require_file,
    write_dataset,
)
from serendipity.datasets.paths import build_tree, normalize_path

SOURCE_NAME = "kuairec"
CAPTIONS_FILE = "kuairec_caption_category.csv"
CATEGORY_COLUMNS = ("first_level_category_name", "second_level_category_name", "third_level_category_name")
TEXT_COLUMNS = ("video_id", "manual_cover_text", "caption", "topic_tag")
UNKNOWN = "UNKNOWN"
DEFAULT_CREATED_AT = datetime(2020, 7, 5, tzinfo=UTC)
TITLE_MAX_CHARS = 80


def ingest_kuairec(
    source_dir: Path, out_dir: Path, created_at: datetime = DEFAULT_CREATED_AT
) -> IngestSummary:
    """Convert the KuaiRec item files into a dataset directory at ``out_dir``."""
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    check_output_dir(source_dir, out_dir)
    quarantine = Quarantine()
    summary = IngestSummary(source=SOURCE_NAME, out_dir=out_dir)

    raw, repaired = _read_captions(source_dir / CAPTIONS_FILE)
    quarantine.register(CAPTIONS_FILE, raw)
    if repaired:
        summary.notes.append(f"{repaired} bare carriage return(s) inside captions replaced by a space")
    frame = raw.assign(item_id=parse_int(raw["video_id"]))
    frame = quarantine.take(
        frame, frame["item_id"].isna(), CAPTIONS_FILE, "video_id is not an integer", "video_id"
    )
    frame = quarantine.take(
        frame, frame["item_id"].duplicated(), CAPTIONS_FILE, "duplicate video_id (first kept)", "video_id"
    )
    paths = frame[list(CATEGORY_COLUMNS)].apply(_known_prefix, axis=1)
    frame = quarantine.take(
        frame, paths.map(len) == 0, CAPTIONS_FILE, "first-level category is UNKNOWN", CATEGORY_COLUMNS[0]
    )
    paths = paths.loc[frame.index]

    clusters, levels = build_tree([normalize_path(path) for path in paths])
    items = pd.concat([_item_columns(frame).reset_index(drop=True), levels], axis=1)
    items["created_at"] = pd.Timestamp(created_at).tz_convert("UTC")
    items["created_at"] = items["created_at"].astype("datetime64[us, UTC]")
    summary.record(CAPTIONS_FILE, len(raw), len(items), quarantine)
    summary.notes.append(
        "tree: real 3-level categories cut at the first UNKNOWN, padded with '(general)' to 4 levels"
    )
    summary.notes.append(f"no upload times in KuaiRec: created_at = {created_at.isoformat()} for every item")
    summary.notes.append("no interactions in this KuaiRec copy: interactions.parquet is empty")
    return write_dataset(out_dir, DatasetTables(clusters, items, empty_interactions()), quarantine, summary)


def _read_captions(path: Path) -> tuple[pd.DataFrame, int]:
    text = require_file(path).read_bytes().decode("utf-8")
    repaired = text.count("\r") - text.count("\r\n")
    text = text.replace("\r\n", "\n").replace("\r", " ")
    frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False)
    require_columns(frame, (*TEXT_COLUMNS, *CATEGORY_COLUMNS), path)
    return frame.reset_index(drop=True), repaired


def _known_prefix(names: pd.Series) -> list[str]:
    prefix = []
    for name in names:
        cleaned = " ".join(str(name).split())
        if not cleaned or cleaned == UNKNOWN:
            break
        prefix.append(cleaned)
    return prefix


def _item_columns(frame: pd.DataFrame) -> pd.DataFrame:
    captions = frame["caption"].str.strip()
    covers = frame["manual_cover_text"].str.strip().where(lambda s: s != UNKNOWN, "")
    topics = frame["topic_tag"].str.strip().str.strip("[]").str.strip()
    titles = captions.where(captions != "", covers)
    titles = titles.where(titles != "", "video " + frame["item_id"].astype(str))
    titles = titles.map(
        lambda title: title if len(title) <= TITLE_MAX_CHARS else title[: TITLE_MAX_CHARS - 1] + "…"
    )
    texts = [
        " ".join(
            part
            for part in (
                caption,
                f"Cover text: {cover}." if cover else "",
                f"Topics: {topic}." if topic else "",
            )
            if part
        )
        or None
        for caption, cover, topic in zip(captions, covers, topics, strict=True)
    ]
    return pd.DataFrame(
        {
            "item_id": frame["item_id"].astype("int64"),
            "title": titles,
            "text": pd.Series(texts, index=frame.index, dtype=object),
            "thumbnail_path": None,
            "video_path": None,
        }
    )

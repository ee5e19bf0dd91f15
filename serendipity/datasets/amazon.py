"""Amazon Review Data 2018, Magazine Subscriptions (5-core reviews + metadata) into the data contract.

* ``meta_Magazine_Subscriptions.json.gz`` -> items, one per ``asin`` (later lines repeating an asin
  are quarantined). ``title``: the HTML-stripped title when it is text (most are broken HTML),
  else the description's first sentence (cut at 80 characters), else the brand, else the asin;
  ``text`` = the HTML-stripped description; no media files (the metadata holds only URLs).
* Tree: the real ``category`` path (2-5 levels), truncated to 4 levels or padded with ``(general)``
  children (see :mod:`serendipity.datasets.paths`); an item with an empty path is placed under its
  ``main_cat`` alone (then padded) and quarantined only when that is empty too.
* ``Magazine_Subscriptions_5.json.gz`` -> interactions: ``satisfaction = (overall - 1) / 4``,
  ``ts`` from ``unixReviewTime``, ``source = "amazon"``; reviews of items without metadata are
  quarantined, and so are repeated reviews (same reviewer, asin and day: the 5-core file holds
  copies, some with a reworded summary), the first one kept.
* String ids become stable int64 ids kept in ``id_map_items.parquet`` / ``id_map_users.parquet``;
  a re-run over the same directory keeps every id already assigned and appends new ones.
* ``created_at`` = the item's first review time; items never reviewed get the earliest review time
  of the whole file (the metadata has no dates), counted in the notes.
"""

from __future__ import annotations

import gzip
import html
import json
import re
from pathlib import Path

import pandas as pd

from serendipity.datasets.common import (
    ID_MAP_ITEMS_FILE,
    ID_MAP_USERS_FILE,
    DatasetTables,
    IngestSummary,
    Quarantine,
    assign_ids,
    check_output_dir,
    epoch_to_timestamp,
    first_time_per_item,
    id_map_table,
    load_id_map,
    parse_float,
    require_file,
    write_dataset,
)
from serendipity.datasets.paths import build_tree, normalize_path

SOURCE_NAME = "amazon"
REVIEWS_FILE = "Magazine_Subscriptions_5.json.gz"
META_FILE = "meta_Magazine_Subscriptions.json.gz"
RATING_MIN, RATING_MAX = 1.0, 5.0
TITLE_MAX_CHARS = 80
_TAG = re.compile(r"<[^>]*>?")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def ingest_amazon(source_dir: Path, out_dir: Path) -> IngestSummary:
    """Convert the Magazine Subscriptions review and metadata files into a dataset at ``out_dir``."""
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    check_output_dir(source_dir, out_dir)
    quarantine = Quarantine()
    summary = IngestSummary(source=SOURCE_NAME, out_dir=out_dir)

    meta_raw = _read_json_lines(source_dir / META_FILE, quarantine)
    reviews_raw = _read_json_lines(source_dir / REVIEWS_FILE, quarantine)
    meta = _parse_meta(meta_raw, quarantine)
    reviews = _parse_reviews(reviews_raw, set(meta["asin"]), quarantine)

    item_ids, item_map = assign_ids(meta["asin"], load_id_map(out_dir, ID_MAP_ITEMS_FILE))
    meta["item_id"] = item_ids.to_numpy()
    user_ids, user_map = assign_ids(reviews["reviewerID"], load_id_map(out_dir, ID_MAP_USERS_FILE))
    asin_to_item = dict(zip(meta["asin"], meta["item_id"], strict=True))
    interactions = pd.DataFrame(
        {
            "user_id": user_ids.to_numpy(),
            "item_id": reviews["asin"].map(asin_to_item).astype("int64").to_numpy(),
            "ts": reviews["ts"].to_numpy(),
            "satisfaction": ((reviews["rating"] - RATING_MIN) / (RATING_MAX - RATING_MIN)).to_numpy(),
            "impression": None,
            "source": SOURCE_NAME,
        }
    )
    interactions["ts"] = interactions["ts"].astype("datetime64[us, UTC]")

    first_review = first_time_per_item(interactions["item_id"], interactions["ts"])
    created_at = meta["item_id"].map(first_review)
    unreviewed = int(created_at.isna().sum())
    if unreviewed:
        fallback = interactions["ts"].min() if len(interactions) else pd.Timestamp(0, tz="UTC")
        created_at = created_at.fillna(fallback)
        summary.notes.append(
            f"{unreviewed} never-reviewed items: created_at = earliest review time {fallback}"
        )
    meta["created_at"] = created_at.astype("datetime64[us, UTC]")

    clusters, levels = build_tree([normalize_path(path) for path in meta["path"]])
    items = pd.concat([meta.reset_index(drop=True), levels], axis=1)
    items["thumbnail_path"] = None
    items["video_path"] = None
    summary.record(META_FILE, len(meta_raw), len(items), quarantine)
    summary.record(REVIEWS_FILE, len(reviews_raw), len(interactions), quarantine)
    summary.notes.append("tree: real category paths truncated or padded with '(general)' to 4 levels")
    extra = {ID_MAP_ITEMS_FILE: id_map_table(item_map), ID_MAP_USERS_FILE: id_map_table(user_map)}
    return write_dataset(out_dir, DatasetTables(clusters, items, interactions, extra), quarantine, summary)


def _read_json_lines(path: Path, quarantine: Quarantine) -> pd.DataFrame:
    """One row per line (index = 0-based line number); unparsable lines are quarantined as ``line``."""
    records: list[dict[str, object]] = []
    with gzip.open(require_file(path), "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines):
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
            except ValueError as error:
                quarantine.add(
                    pd.DataFrame({"line": [line]}, index=[number]), path.name, f"not JSON: {error}"
                )
                record = {}
            records.append(record)
    frame = pd.DataFrame.from_records(records)
    frame["_parsed"] = [bool(record) for record in records]
    return frame


def _parse_meta(raw: pd.DataFrame, quarantine: Quarantine) -> pd.DataFrame:
    frame = raw[raw["_parsed"]].drop(columns="_parsed")
    quarantine.register(META_FILE, frame)
    asin = frame.get("asin", pd.Series(index=frame.index, dtype=object)).map(_clean_text)
    frame = quarantine.take(frame.assign(asin=asin), asin == "", META_FILE, "missing asin", "asin")
    frame = quarantine.take(
        frame, frame["asin"].duplicated(), META_FILE, "duplicate asin (first kept)", "asin"
    )
    paths = [_category_path(row) for row in frame.itertuples(index=False)]
    frame = frame.assign(path=paths)
    frame = quarantine.take(
        frame, frame["path"].map(len) == 0, META_FILE, "empty category and main_cat", "category"
    )
    descriptions = frame["description"].map(_join_text) if "description" in frame else ""
    frame = frame.assign(text=pd.Series(descriptions, index=frame.index).replace("", None))
    frame["title"] = [
        _title(row.title, row.text, row.brand, row.asin)
        for row in frame.reindex(columns=["title", "text", "brand", "asin"]).itertuples(index=False)
    ]
    return frame[["asin", "title", "text", "path"]].reset_index(drop=True)


def _parse_reviews(raw: pd.DataFrame, known_asins: set[str], quarantine: Quarantine) -> pd.DataFrame:
    frame = raw[raw["_parsed"]].drop(columns="_parsed")
    quarantine.register(REVIEWS_FILE, frame)
    frame = frame.assign(
        reviewerID=frame.get("reviewerID", pd.Series(index=frame.index, dtype=object)).map(_clean_text),
        asin=frame.get("asin", pd.Series(index=frame.index, dtype=object)).map(_clean_text),
        rating=parse_float(frame.get("overall", pd.Series(index=frame.index, dtype=object))),
        ts=epoch_to_timestamp(frame.get("unixReviewTime", pd.Series(index=frame.index, dtype=object))),
    )
    frame = quarantine.take(
        frame, frame["reviewerID"] == "", REVIEWS_FILE, "missing reviewerID", "reviewerID"
    )
    frame = quarantine.take(frame, frame["asin"] == "", REVIEWS_FILE, "missing asin", "asin")
    out_of_range = ~frame["rating"].between(RATING_MIN, RATING_MAX)
    frame = quarantine.take(frame, out_of_range, REVIEWS_FILE, "overall missing or outside 1..5", "overall")
    frame = quarantine.take(
        frame, frame["ts"].isna(), REVIEWS_FILE, "unixReviewTime is not epoch seconds", "unixReviewTime"
    )
    unknown = ~frame["asin"].isin(known_asins)
    frame = quarantine.take(frame, unknown, REVIEWS_FILE, "asin not among the converted items", "asin")
    repeated = frame.duplicated(["reviewerID", "asin", "ts"])
    reason = "duplicate review: same reviewerID, asin and unixReviewTime (first kept)"
    frame = quarantine.take(frame, repeated, REVIEWS_FILE, reason, "unixReviewTime")
    return frame[["reviewerID", "asin", "rating", "ts"]].reset_index(drop=True)


def _clean_text(value: object) -> str:
    """HTML tags removed, entities decoded, whitespace collapsed; non-strings give ``""``."""
    if not isinstance(value, str):
        return ""
    return " ".join(html.unescape(_TAG.sub(" ", value)).split())


def _join_text(value: object) -> str:
    parts = value if isinstance(value, list) else [value]
    return " ".join(text for text in (_clean_text(part) for part in parts) if text)


def _category_path(row: tuple) -> list[str]:
    category = getattr(row, "category", None)
    names = [_clean_text(name) for name in category] if isinstance(category, list) else []
    names = [name for name in names if name]
    if not names:
        main_cat = _clean_text(getattr(row, "main_cat", None))
        names = [main_cat] if main_cat else []
    return names


def _title(raw_title: object, text: object, brand: object, asin: str) -> str:
    title = _clean_text(raw_title)
    if not title and isinstance(text, str) and text:
        title = _SENTENCE_END.split(text, maxsplit=1)[0]
    title = title or _clean_text(brand) or asin
    return title if len(title) <= TITLE_MAX_CHARS else title[: TITLE_MAX_CHARS - 1] + "…"

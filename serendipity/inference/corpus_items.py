"""What batch inference reads: the corpus items from the items table, and a content hash per item.

The hash covers an item's text fields, its cluster path and the bytes of its media files, so an
item is inferred again when any of them changes.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from serendipity.inference.store import error_rows
from serendipity.layout import WorkLayout
from serendipity.schema import ITEM_JOIN_KEY, ITEMS_FILE, LEVEL_COLUMNS

_HASHED_COLUMNS = ("title", "text", "thumbnail_path", "video_path", *LEVEL_COLUMNS)
_MEDIA_COLUMNS = ("thumbnail_path", "video_path")
_CHUNK = 1 << 20


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    except OSError:
        return "missing"
    return digest.hexdigest()


def _row_digest(row: dict[str, Any], dataset_dir: Path) -> str:
    digest = hashlib.sha256()
    for column in _HASHED_COLUMNS:
        value = row.get(column)
        digest.update(f"{column}={'' if value is None or pd.isna(value) else value}\x1f".encode())
    for column in _MEDIA_COLUMNS:
        value = row.get(column)
        if isinstance(value, str) and value:
            digest.update(_file_digest(dataset_dir / value).encode())
    return digest.hexdigest()


def content_hashes(items: pd.DataFrame, dataset_dir: Path, threads: int = 4) -> pd.Series:
    """sha256 over an item's text fields, cluster path and media file bytes, indexed like ``items``."""
    rows = items.to_dict("records")
    with ThreadPoolExecutor(max_workers=threads) as pool:
        digests = list(pool.map(lambda row: _row_digest(row, dataset_dir), rows))
    return pd.Series(digests, index=items.index, dtype="string")


def load_corpus_items(
    layout: WorkLayout, delta_only: bool, model_version: str, now: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Items-table rows of the corpus (or its delta), and error rows for corpus ids the table lacks."""
    corpus_path = layout.corpus_delta_path if delta_only else layout.corpus_path
    if not corpus_path.exists():
        raise FileNotFoundError(f"corpus {corpus_path} does not exist; run the corpus stage first")
    corpus = pq.read_table(corpus_path, columns=[ITEM_JOIN_KEY]).to_pandas()[ITEM_JOIN_KEY]
    items_path = layout.catalog_dir() / ITEMS_FILE
    items = pq.read_table(items_path).to_pandas()
    items = items[items[ITEM_JOIN_KEY].isin(corpus)].reset_index(drop=True)
    missing = corpus[~corpus.isin(items[ITEM_JOIN_KEY])].drop_duplicates()
    errors = error_rows(missing, "", model_version, f"corpus item not in {items_path}", now)
    return items, errors

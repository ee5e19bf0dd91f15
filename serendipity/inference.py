"""Engine-agnostic parts of batch inference: content hashes, the done-manifest, and merging results.

The manifest is keyed by (item_id, content_hash, model_version). A run infers only the corpus
items whose key is not in it, writes each finished batch as its own part file (so a killed run
loses at most the batch in flight), and a final compaction folds the parts into the output table
(latest row per item) and the manifest, both replaced atomically.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from serendipity.io import write_parquet_atomic
from serendipity.layout import WorkLayout
from serendipity.schema import ITEMS_FILE, LEVEL_COLUMNS, SERENDIPITY_SCHEMA

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.int64()),
        pa.field("content_hash", pa.string()),
        pa.field("model_version", pa.string()),
    ]
)
ERRORS_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.int64()),
        pa.field("content_hash", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("event_timestamp", pa.timestamp("us", tz="UTC")),
    ]
)
_HASHED_COLUMNS = ("title", "text", "thumbnail_path", "video_path", *LEVEL_COLUMNS)
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


def _row_digest(row: dict, dataset_dir: Path) -> str:
    digest = hashlib.sha256()
    for column in _HASHED_COLUMNS:
        value = row.get(column)
        digest.update(f"{column}={'' if value is None or pd.isna(value) else value}\x1f".encode())
    for column in ("thumbnail_path", "video_path"):
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
    layout: WorkLayout, delta_only: bool, model_version_: str, now: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Items-table rows of the corpus (or its delta), and error rows for corpus ids the table lacks."""
    corpus_path = layout.corpus_delta_path if delta_only else layout.corpus_path
    if not corpus_path.exists():
        raise FileNotFoundError(f"corpus {corpus_path} does not exist; run the corpus stage first")
    corpus = pq.read_table(corpus_path, columns=["item_id"]).to_pandas()
    items_path = layout.catalog_dir() / ITEMS_FILE
    items = pq.read_table(items_path).to_pandas()
    items = items[items["item_id"].isin(corpus["item_id"])].reset_index(drop=True)
    missing = corpus.loc[~corpus["item_id"].isin(items["item_id"]), "item_id"].drop_duplicates()
    errors = pd.DataFrame(
        {
            "item_id": missing.astype("int64"),
            "content_hash": "",
            "model_version": model_version_,
            "reason": f"corpus item not in {items_path}",
            "event_timestamp": now,
        }
    )
    return items, errors


def append_audit(path: str | Path, item_ids: Iterable[int], model_version_: str) -> None:
    """Append one ``item_id<TAB>model_version`` line per inferred item (an optional audit trail)."""
    lines = "".join(f"{item_id}\t{model_version_}\n" for item_id in item_ids)
    with open(path, "a") as handle:
        handle.write(lines)
        handle.flush()
        os.fsync(handle.fileno())


def _write(frame: pd.DataFrame, schema: pa.Schema, path: Path) -> None:
    table = pa.Table.from_pandas(frame.reset_index(drop=True), schema=schema, preserve_index=False)
    write_parquet_atomic(table, path)


class InferenceStore:
    """The inference output directory: final table, manifest, errors and in-flight part files."""

    def __init__(self, output_path: Path, manifest_path: Path, errors_path: Path) -> None:
        self.output_path = output_path
        self.manifest_path = manifest_path
        self.errors_path = errors_path
        self.parts_dir = output_path.parent / "_parts"

    @classmethod
    def of(cls, layout: WorkLayout) -> InferenceStore:
        return cls(layout.serendipity_path, layout.inference_manifest_path, layout.inference_errors_path)

    def _read(self, path: Path, schema: pa.Schema) -> pd.DataFrame:
        if path.exists():
            return pq.read_table(path).to_pandas()
        return schema.empty_table().to_pandas()

    def _parts(self, kind: str) -> list[Path]:
        return sorted(self.parts_dir.glob(f"{kind}-*.parquet")) if self.parts_dir.exists() else []

    def pending_parts(self) -> list[Path]:
        """Part files of batches finished but not yet compacted into the output."""
        return self._parts("ok") + self._parts("err")

    def done_keys(self) -> pd.DataFrame:
        """Every (item_id, content_hash, model_version) already inferred, committed or in parts."""
        frames = [self._read(self.manifest_path, MANIFEST_SCHEMA)]
        columns = list(MANIFEST_SCHEMA.names)
        frames += [pq.read_table(p, columns=columns).to_pandas() for p in self._parts("ok")]
        return pd.concat(frames, ignore_index=True).drop_duplicates()

    def plan(self, corpus_items: pd.DataFrame, version: str) -> pd.DataFrame:
        """Rows of ``corpus_items`` (with a ``content_hash`` column) still to infer under ``version``."""
        done = self.done_keys()
        done = done[done["model_version"] == version]
        keys = corpus_items[["item_id", "content_hash"]].merge(
            done[["item_id", "content_hash"]], how="left", indicator=True
        )
        todo = keys["_merge"].eq("left_only").to_numpy()
        return corpus_items.loc[todo].reset_index(drop=True)

    def write_part(self, results: pd.DataFrame, errors: pd.DataFrame) -> None:
        """Durably record one finished batch (results carry content_hash for the manifest)."""
        name = uuid.uuid4().hex
        if len(results):
            table = pa.Table.from_pandas(results, preserve_index=False)
            write_parquet_atomic(table, self.parts_dir / f"ok-{name}.parquet")
        if len(errors):
            table = pa.Table.from_pandas(errors, schema=ERRORS_SCHEMA, preserve_index=False)
            write_parquet_atomic(table, self.parts_dir / f"err-{name}.parquet")

    def compact(self) -> tuple[int, int]:
        """Fold part files into the output (latest row per item) and manifest; returns (rows, errors)."""
        ok_parts = [pq.read_table(p).to_pandas() for p in self._parts("ok")]
        err_parts = [pq.read_table(p).to_pandas() for p in self._parts("err")]
        output = self._read(self.output_path, SERENDIPITY_SCHEMA)
        manifest = self._read(self.manifest_path, MANIFEST_SCHEMA)
        if ok_parts:
            new = pd.concat(ok_parts, ignore_index=True)
            output = pd.concat([output, new[list(SERENDIPITY_SCHEMA.names)]], ignore_index=True)
            output = output.sort_values(["item_id", "event_timestamp"], kind="stable")
            output = output.drop_duplicates("item_id", keep="last")
            manifest = pd.concat([manifest, new[list(MANIFEST_SCHEMA.names)]], ignore_index=True)
            manifest = manifest.drop_duplicates("item_id", keep="last")
        errors = self._read(self.errors_path, ERRORS_SCHEMA)
        if err_parts:
            errors = pd.concat([errors, *err_parts], ignore_index=True).drop_duplicates(
                ["item_id", "content_hash", "model_version"], keep="last"
            )
        # An item that succeeded later is no longer an error.
        errors = errors[~errors["item_id"].isin(output["item_id"])]
        _write(output, SERENDIPITY_SCHEMA, self.output_path)
        _write(manifest, MANIFEST_SCHEMA, self.manifest_path)
        _write(errors, ERRORS_SCHEMA, self.errors_path)
        for path in self.pending_parts():
            path.unlink()
        return len(output), len(errors)


def prediction_rows(
    item_ids: list[int],
    content_hashes_: list[str],
    predictions: list[list],
    media_fallbacks: list[bool],
    model_version_: str,
    prompt_style: str,
    event_timestamp: pd.Timestamp,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Output rows (SERENDIPITY_SCHEMA + content_hash) and error rows for items with no cluster."""
    rows, errors = [], []
    for item_id, content_hash, ranked, fallback in zip(
        item_ids, content_hashes_, predictions, media_fallbacks, strict=True
    ):
        mapped = [p for p in ranked if p.cluster_id is not None]
        if not mapped:
            answer = ranked[0].description if ranked else ""
            errors.append((item_id, content_hash, model_version_, f"answer names no cluster: {answer!r}"))
            continue
        best = mapped[0]
        rows.append(
            {
                "item_id": item_id,
                "serendipitous_cluster": best.cluster_id,
                "serendipitous_description": best.description,
                "score": float(best.score),
                "alternatives": [p.cluster_id for p in mapped],
                "alternative_scores": [float(p.score) for p in mapped],
                "reasoning": best.reasoning,
                "media_fallback": bool(fallback),
                "model_version": model_version_,
                "prompt_style": prompt_style,
                "event_timestamp": event_timestamp,
                "content_hash": content_hash,
            }
        )
    columns = [*SERENDIPITY_SCHEMA.names, "content_hash"]
    error_frame = pd.DataFrame(errors, columns=["item_id", "content_hash", "model_version", "reason"])
    error_frame["event_timestamp"] = event_timestamp
    return pd.DataFrame(rows, columns=columns), error_frame

"""The inference output directory: the done-manifest, part files, compaction, and the rows written there.

The manifest is keyed by (item_id, content_hash, model_version). A run infers only the corpus
items whose key is not in it, writes each finished batch as its own part file (so a killed run
loses at most the batch in flight), and a final compaction folds the parts into the output table
(latest row per item) and the manifest, both replaced atomically.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from serendipity.io import write_parquet_atomic
from serendipity.layout import WorkLayout
from serendipity.schema import (
    ALTERNATIVE_SCORES_COLUMN,
    ALTERNATIVES_FEATURE,
    CONTENT_HASH_COLUMN,
    ERROR_REASON_COLUMN,
    EVENT_TIMESTAMP,
    INFERENCE_ERRORS_SCHEMA,
    INFERENCE_MANIFEST_SCHEMA,
    ITEM_JOIN_KEY,
    MEDIA_FALLBACK_COLUMN,
    MODEL_VERSION_FEATURE,
    PROMPT_STYLE_COLUMN,
    REASONING_FEATURE,
    SERENDIPITOUS_CLUSTER_FEATURE,
    SERENDIPITOUS_DESCRIPTION_FEATURE,
    SERENDIPITY_SCHEMA,
    SERENDIPITY_SCORE_FEATURE,
)

if TYPE_CHECKING:
    from serendipity.mllm.generation import Prediction

MANIFEST_KEY = list(INFERENCE_MANIFEST_SCHEMA.names)
OUTPUT_COLUMNS = [*SERENDIPITY_SCHEMA.names, CONTENT_HASH_COLUMN]  # a part's rows: output + manifest


def error_rows(
    item_ids: Iterable[int],
    content_hashes: Iterable[str] | str,
    model_version: str,
    reasons: Iterable[str] | str,
    event_timestamp: pd.Timestamp,
) -> pd.DataFrame:
    """Rows of the errors table (INFERENCE_ERRORS_SCHEMA); a str hash or reason applies to every row."""
    ids = [int(item_id) for item_id in item_ids]
    hashes = [content_hashes] * len(ids) if isinstance(content_hashes, str) else list(content_hashes)
    why = [reasons] * len(ids) if isinstance(reasons, str) else list(reasons)
    return pd.DataFrame(
        {
            ITEM_JOIN_KEY: pd.Series(ids, dtype="int64"),
            CONTENT_HASH_COLUMN: pd.Series(hashes, dtype="object"),
            MODEL_VERSION_FEATURE: model_version,
            ERROR_REASON_COLUMN: pd.Series(why, dtype="object"),
            EVENT_TIMESTAMP: event_timestamp,
        }
    )


def prediction_rows(
    item_ids: Sequence[int],
    content_hashes: Sequence[str],
    predictions: Sequence[Sequence[Prediction]],
    media_fallbacks: Sequence[bool],
    model_version: str,
    prompt_style: str,
    event_timestamp: pd.Timestamp,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Output rows (SERENDIPITY_SCHEMA + content_hash) and error rows for items with no cluster."""
    rows, failed, failed_hashes, reasons = [], [], [], []
    for item_id, content_hash, ranked, fallback in zip(
        item_ids, content_hashes, predictions, media_fallbacks, strict=True
    ):
        mapped = [p for p in ranked if p.cluster_id is not None]
        if not mapped:
            answer = ranked[0].description if ranked else ""
            failed.append(item_id)
            failed_hashes.append(content_hash)
            reasons.append(f"answer names no cluster: {answer!r}")
            continue
        best = mapped[0]
        rows.append(
            {
                ITEM_JOIN_KEY: item_id,
                SERENDIPITOUS_CLUSTER_FEATURE: best.cluster_id,
                SERENDIPITOUS_DESCRIPTION_FEATURE: best.description,
                SERENDIPITY_SCORE_FEATURE: float(best.score),
                ALTERNATIVES_FEATURE: [p.cluster_id for p in mapped],
                ALTERNATIVE_SCORES_COLUMN: [float(p.score) for p in mapped],
                REASONING_FEATURE: best.reasoning,
                MEDIA_FALLBACK_COLUMN: bool(fallback),
                MODEL_VERSION_FEATURE: model_version,
                PROMPT_STYLE_COLUMN: prompt_style,
                EVENT_TIMESTAMP: event_timestamp,
                CONTENT_HASH_COLUMN: content_hash,
            }
        )
    errors = error_rows(failed, failed_hashes, model_version, reasons, event_timestamp)
    return pd.DataFrame(rows, columns=OUTPUT_COLUMNS), errors


def append_audit(path: str | Path, item_ids: Iterable[int], model_version: str) -> None:
    """Append one ``item_id<TAB>model_version`` line per inferred item (an optional audit trail)."""
    lines = "".join(f"{item_id}\t{model_version}\n" for item_id in item_ids)
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
        frames = [self._read(self.manifest_path, INFERENCE_MANIFEST_SCHEMA)]
        frames += [pq.read_table(p, columns=MANIFEST_KEY).to_pandas() for p in self._parts("ok")]
        return pd.concat(frames, ignore_index=True).drop_duplicates()

    def plan(self, corpus_items: pd.DataFrame, version: str) -> pd.DataFrame:
        """Rows of ``corpus_items`` (with a ``content_hash`` column) still to infer under ``version``."""
        done = self.done_keys()
        done = done[done[MODEL_VERSION_FEATURE] == version]
        item_key = [ITEM_JOIN_KEY, CONTENT_HASH_COLUMN]
        keys = corpus_items[item_key].merge(done[item_key], how="left", indicator=True)
        todo = keys["_merge"].eq("left_only").to_numpy()
        return corpus_items.loc[todo].reset_index(drop=True)

    def write_part(self, results: pd.DataFrame, errors: pd.DataFrame) -> None:
        """Durably record one finished batch (results carry content_hash for the manifest)."""
        name = uuid.uuid4().hex
        if len(results):
            table = pa.Table.from_pandas(results, preserve_index=False)
            write_parquet_atomic(table, self.parts_dir / f"ok-{name}.parquet")
        if len(errors):
            table = pa.Table.from_pandas(errors, schema=INFERENCE_ERRORS_SCHEMA, preserve_index=False)
            write_parquet_atomic(table, self.parts_dir / f"err-{name}.parquet")

    def compact(self) -> tuple[int, int]:
        """Fold part files into the output (latest row per item) and manifest; returns (rows, errors)."""
        ok_parts = [pq.read_table(p).to_pandas() for p in self._parts("ok")]
        err_parts = [pq.read_table(p).to_pandas() for p in self._parts("err")]
        output = self._read(self.output_path, SERENDIPITY_SCHEMA)
        manifest = self._read(self.manifest_path, INFERENCE_MANIFEST_SCHEMA)
        if ok_parts:
            new = pd.concat(ok_parts, ignore_index=True)
            output = pd.concat([output, new[list(SERENDIPITY_SCHEMA.names)]], ignore_index=True)
            output = output.sort_values([ITEM_JOIN_KEY, EVENT_TIMESTAMP], kind="stable")
            output = output.drop_duplicates(ITEM_JOIN_KEY, keep="last")
            manifest = pd.concat([manifest, new[MANIFEST_KEY]], ignore_index=True)
            manifest = manifest.drop_duplicates(ITEM_JOIN_KEY, keep="last")
        errors = self._read(self.errors_path, INFERENCE_ERRORS_SCHEMA)
        if err_parts:
            errors = pd.concat([errors, *err_parts], ignore_index=True).drop_duplicates(
                MANIFEST_KEY, keep="last"
            )
        # An item that succeeded later is no longer an error.
        errors = errors[~errors[ITEM_JOIN_KEY].isin(output[ITEM_JOIN_KEY])]
        _write(output, SERENDIPITY_SCHEMA, self.output_path)
        _write(manifest, INFERENCE_MANIFEST_SCHEMA, self.manifest_path)
        _write(errors, INFERENCE_ERRORS_SCHEMA, self.errors_path)
        for path in self.pending_parts():
            path.unlink()
        return len(output), len(errors)

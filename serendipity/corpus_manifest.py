"""The popular corpus's manifest: what each corpus run committed, and the baseline of its delta.

The manifest itself is a small JSON summary; the committed items (item_id, impressions) and the delta's
baseline (item_id) are Parquet directories written by Spark under ``committed/<generation>/`` beside it,
so no list of item ids ever passes through the driver. A generation is named by the fingerprints of
its items and baseline: re-running on unchanged input names the same generation and rewrites nothing.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serendipity.io import write_json_atomic

COMMITTED_DIR = "committed"
ITEMS_DIR = "items.parquet"
BASELINE_DIR = "baseline.parquet"


@dataclass(frozen=True)
class CorpusManifest:
    """A run's corpus summary, and the generation directory holding its items and delta baseline."""

    corpus_items: int
    corpus_fingerprint: str  # order-insensitive digest of the corpus's (item_id, impressions) rows
    baseline_fingerprint: str
    coverage_target: float
    achieved_coverage: float

    @property
    def generation(self) -> str:
        return f"{self.corpus_fingerprint}-{self.baseline_fingerprint}"

    @classmethod
    def load(cls, path: Path) -> CorpusManifest | None:
        if not path.exists():
            return None
        data: dict[str, Any] = json.loads(path.read_text())
        try:
            return cls(**{name: data[name] for name in cls.__dataclass_fields__})
        except KeyError as missing:
            raise ValueError(f"corpus manifest {path} lacks key {missing}; delete it to start over") from None

    def write(self, path: Path) -> Path:
        """Write the manifest (the commit), then drop the generations it no longer names."""
        written = write_json_atomic(dataclasses.asdict(self) | {"generation": self.generation}, path)
        for stale in committed_root(path).glob("*"):
            if stale.name != self.generation:
                shutil.rmtree(stale, ignore_errors=True)
        return written

    def items_dir(self, path: Path) -> Path:
        """The committed corpus items (item_id, impressions) of the manifest at ``path``."""
        return committed_root(path) / self.generation / ITEMS_DIR

    def baseline_dir(self, path: Path) -> Path:
        """The item ids the committed delta was taken against."""
        return committed_root(path) / self.generation / BASELINE_DIR


def committed_root(manifest_path: Path) -> Path:
    return manifest_path.parent / COMMITTED_DIR


def fingerprint(rows: int, hash_sum: int | None) -> str:
    """The name-safe digest of a set of rows: their count and the sum of their 64-bit hashes."""
    return f"{rows}x{(hash_sum or 0) % 2**64:016x}"

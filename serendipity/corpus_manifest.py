"""The popular corpus's manifest: what each corpus run committed, and the baseline of its delta."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serendipity.io import write_json_atomic


@dataclass(frozen=True)
class CorpusManifest:
    """A run's corpus (items and impressions, in corpus order) and the baseline of its delta."""

    item_ids: list[int]
    impressions: list[int]
    previous_item_ids: list[int]
    coverage_target: float
    achieved_coverage: float

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
        return write_json_atomic(dataclasses.asdict(self), path)


def delta_baseline(previous: CorpusManifest | None, item_ids: list[int], impressions: list[int]) -> list[int]:
    """Items already covered before this run.

    Re-running on unchanged input (same corpus as the manifest) reuses the manifest's own baseline,
    so the delta, like every output, is the same on every re-run.
    """
    if previous is None:
        return []
    if previous.item_ids == item_ids and previous.impressions == impressions:
        return previous.previous_item_ids
    return previous.item_ids

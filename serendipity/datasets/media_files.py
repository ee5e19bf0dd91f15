"""Media files of a user's dataset: keep the usable relative paths and copy them into the output."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd

from serendipity.schema import DATASET_FILES, TREE_INFO_FILE

MEDIA_COLUMNS = ("thumbnail_path", "video_path")


def _reserved(relative: str) -> bool:
    """Top-level names the dataset's own files use (tables, markers, id maps, ingest reports)."""
    if "/" in relative:
        return False
    return relative in DATASET_FILES or relative == TREE_INFO_FILE or relative.startswith(("_", "id_map_"))


def keep_source_media(items: pd.DataFrame, source_dir: Path, notes: list[str]) -> list[str]:
    """Null every media path that is not an existing file under ``source_dir`` (noting how many);
    return the relative paths left, to be copied into the dataset."""
    root = source_dir.resolve()
    to_copy: set[str] = set()
    for column in MEDIA_COLUMNS:
        if column not in items:
            items[column] = None
            continue
        kept: list[str | None] = []
        for value in items[column]:
            text = (
                "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value).strip()
            )
            target = (root / text).resolve() if text else None
            usable = target is not None and root in target.parents and target.is_file()
            relative = target.relative_to(root).as_posix() if usable and target is not None else None
            kept.append(None if relative is None or _reserved(relative) else relative)
        dropped = sum(
            1 for value, path in zip(items[column], kept, strict=True) if path is None and _present(value)
        )
        items[column] = pd.Series(kept, index=items.index, dtype=object)
        to_copy.update(path for path in kept if path)
        if dropped:
            notes.append(f"{dropped} {column} value(s) missing, outside the source or reserved: set to null")
    return sorted(to_copy)


def _present(value: object) -> bool:
    return (
        value is not None and not (isinstance(value, float) and pd.isna(value)) and bool(str(value).strip())
    )


def copy_media(relative_paths: list[str], source_dir: Path, target_dir: Path) -> None:
    """Hard-link (or copy, across file systems) each file to the same relative path under ``target_dir``."""
    for relative in relative_paths:
        destination = target_dir / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source_dir / relative, destination)
        except OSError:
            shutil.copy2(source_dir / relative, destination)

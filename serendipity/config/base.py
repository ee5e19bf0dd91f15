"""What every section of the pipeline config shares: the strict, frozen base model and common field types."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class Section(BaseModel):
    """A config section: unknown keys are errors, and a loaded section never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _positive_branching(value: tuple[int, ...]) -> tuple[int, ...]:
    if any(b < 1 for b in value):
        raise ValueError("every branching factor must be >= 1")
    return value


Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Branching = Annotated[tuple[int, int, int, int], AfterValidator(_positive_branching)]  # children per level


URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def local_path(value: str | Path, base_dir: Path, key: str) -> Path:
    """The one rule for a path a config names: ``~`` expanded, a relative path taken against ``base_dir``
    (the config file's folder), and a URI refused, since every stage reads and writes these paths as
    local files (pandas, pyarrow, torch, Feast's SQLite), not only Spark."""
    text = str(value)
    if URI.match(text):
        raise ValueError(
            f"{key}: {text!r} is a URI, but {key} must be a local path: every node that runs a stage "
            "(Spark executors, Ray workers, Serve replicas) must see it as a directory on a shared volume "
            "or a mounted bucket (e.g. /data/work on a PVC, or a gcsfuse/s3 mount); give that mount's path"
        )
    path = Path(text).expanduser()
    return path if path.is_absolute() else (base_dir / path).resolve()

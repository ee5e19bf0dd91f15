"""The column mapping of the generic adapter: which source column feeds each contract column.

Loaded from YAML (see ``configs/generic_example.yaml``). Unknown keys and bad values are errors
naming the key. File paths are relative to the source directory given to the adapter.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from serendipity.datasets.common import IngestError

SatisfactionTransform = Callable[[pd.Series], pd.Series]
_RATING = re.compile(r"^rating:(-?\d+(?:\.\d+)?):(-?\d+(?:\.\d+)?)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ItemColumns(_Strict):
    item_id: str
    title: str
    text: str | None = None
    thumbnail_path: str | None = None  # relative media paths under the source dir; copied into the dataset
    video_path: str | None = None
    created_at: str | None = None  # absent: the item's first interaction time


class ItemsMapping(_Strict):
    file: str
    columns: ItemColumns
    category_columns: list[str] = Field(default_factory=list, max_length=8)  # broad -> fine


class InteractionColumns(_Strict):
    user_id: str
    item_id: str
    ts: str
    satisfaction: str
    impression: str | None = None


class InteractionsMapping(_Strict):
    file: str
    columns: InteractionColumns
    satisfaction_transform: str = "identity"

    @field_validator("satisfaction_transform")
    @classmethod
    def _known_transform(cls, value: str) -> str:
        satisfaction_transform(value)
        return value


class GenericMapping(_Strict):
    """A user's items and interactions files and how their columns map onto the contract."""

    name: str = "generic"
    items: ItemsMapping
    interactions: InteractionsMapping
    timestamp_unit: Literal["s", "ms", "us"] = "s"  # for numeric (epoch) timestamps


def load_mapping(path: str | Path) -> GenericMapping:
    """Read and check a mapping YAML; errors name the file and the offending key."""
    path = Path(path).expanduser().resolve()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise IngestError(f"mapping file not found: {path}") from None
    except yaml.YAMLError as error:
        raise IngestError(f"{path}: not valid YAML: {error}") from None
    try:
        return GenericMapping.model_validate(data)
    except ValidationError as error:
        lines = [f"invalid mapping in {path}:"]
        for item in error.errors():
            key = ".".join(str(part) for part in item["loc"]) or "<root>"
            message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
            lines.append(f"  {key}: {message}")
        raise IngestError("\n".join(lines)) from None


def satisfaction_transform(spec: str) -> SatisfactionTransform:
    """The transform named by ``spec``: values it cannot map into [0, 1] become NaN.

    ``identity`` (already in [0, 1]), ``minmax`` (over the column's finite values; a constant
    column maps to 1.0), ``rating:LO:HI`` (linear, values outside LO..HI invalid), ``watch_ratio``
    (non-negative, capped at 1).
    """
    if spec == "identity":
        return lambda values: values.where(values.between(0.0, 1.0))
    if spec == "watch_ratio":
        return lambda values: values.where(values >= 0).clip(upper=1.0)
    if spec == "minmax":
        return _minmax
    match = _RATING.match(spec)
    if match:
        low, high = float(match.group(1)), float(match.group(2))
        if low >= high:
            raise ValueError(f"rating transform needs LO < HI, got {spec!r}")
        return lambda values: ((values - low) / (high - low)).where(values.between(low, high))
    raise ValueError(
        f"unknown satisfaction transform {spec!r}: use identity, minmax, rating:LO:HI or watch_ratio"
    )


def _minmax(values: pd.Series) -> pd.Series:
    finite = values[np.isfinite(values)]
    if finite.empty:
        return values * np.nan
    low, high = float(finite.min()), float(finite.max())
    if high == low:
        return values.where(np.isfinite(values)) * 0.0 + 1.0
    return ((values - low) / (high - low)).where(np.isfinite(values))

"""What every section of the pipeline config shares: the strict, frozen base model and common field types."""

from __future__ import annotations

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

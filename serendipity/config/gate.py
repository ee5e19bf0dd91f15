"""The ``mllm.gate:`` section: when a fine-tuned model is published (the rules: ``serendipity.mllm.gate``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from serendipity.config.base import Section


class GateConfig(Section):
    """When a fine-tuned model is published as ``latest`` (see ``serendipity.mllm.gate`` for the rules)."""

    rule: Literal["paired_not_worse", "always"] = "paired_not_worse"
    margin: float = Field(0.0, ge=-1.0, le=1.0)  # recall shortfall tolerated against a reference
    alpha: float = Field(0.05, gt=0.0, lt=1.0)  # level of the paired test

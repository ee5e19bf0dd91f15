"""The ``mining:`` and ``prior:`` sections: serendipitous pairs, their curation and the transition prior."""

from __future__ import annotations

from pydantic import Field

from serendipity.config.base import Fraction, Section


class MiningConfig(Section):
    """Serendipitous pair mining and curation (the paper's Section 2 and 4.1)."""

    level: int = Field(3, ge=2, le=4)  # L: serendipitous = different at L, same at L-1
    session_gap_minutes: float = Field(30.0, gt=0)
    min_support: int = Field(2, ge=1)
    smoothing: float = Field(2.0, ge=0)  # pseudo-count pulling s(v, c) towards the global mean
    top_k_per_cluster: int = Field(10, ge=1)
    # Time split of the serendipitous pairs: the latest ``validation_fraction`` of them validate (the gate),
    # the ``calibration_fraction`` before those calibrate (the nominator's weight), the earlier ones train.
    validation_fraction: Fraction = 0.2
    calibration_fraction: Fraction = 0.15
    max_holdout_items: int = Field(1000, ge=1)  # context items per held-out split (a hash-ordered sample)
    corpus_coverage: Fraction = 0.8
    split_seed: int = 0


class PriorConfig(Section):
    """The logged transition prior P(next cluster | context), learnt from the training-period pairs."""

    smoothing: float = Field(1.0, gt=0)  # additive pseudo-count per sibling of P(next | context cluster)
    min_item_transitions: int = Field(3, ge=1)  # an item with this many gets P(next | item), shrunk

"""What online recommendation takes and gives: ``RecommendArgs`` in, ``Recommendation`` out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

Source = Literal["serendipity", "fallback", "neighbours"]


class RecommendArgs(NamedTuple):
    """The arguments of one ``Recommender.recommend`` call, as ``recommend_many`` takes them."""

    user_id: int
    context_item_id: int
    k: int
    history: list[int] | None = None


@dataclass(frozen=True)
class RecommendedItem:
    item_id: int
    score: float
    cluster_id: int


@dataclass(frozen=True)
class Recommendation:
    items: list[RecommendedItem]
    source: Source
    cluster_id: int | None
    cluster_description: str | None
    reasoning: str | None
    degraded: bool = False
    cold_start: bool = False  # the user had no history: the context item alone made the query

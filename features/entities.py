"""Feast entities: the context item and the user."""

from __future__ import annotations

from feast import Entity, ValueType

from serendipity.schema import ITEM_ENTITY, ITEM_JOIN_KEY, USER_ENTITY, USER_JOIN_KEY

item = Entity(
    name=ITEM_ENTITY,
    join_keys=[ITEM_JOIN_KEY],
    value_type=ValueType.INT64,
    description="A video; as a context item it keys serendipitous_cluster(context_item).",
)
user = Entity(
    name=USER_ENTITY,
    join_keys=[USER_JOIN_KEY],
    value_type=ValueType.INT64,
    description="A user of the platform.",
)

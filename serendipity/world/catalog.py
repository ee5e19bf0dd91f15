"""The world's items: leaf clusters, Zipf popularity, creation times, hidden cue, titles and captions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serendipity.config import WorldConfig
from serendipity.world.rules import WorldRules
from serendipity.world.taxonomy import Taxonomy

SECONDS_PER_DAY = 86_400.0
TITLE_OPENERS = (
    "Epic", "Quick", "My", "Daily", "Ultimate", "Simple", "Wild", "Tiny", "Best", "Honest", "Secret", "Lazy",
)  # fmt: skip


@dataclass(frozen=True)
class Catalog:
    """Per-item arrays; the item id is the array index. Cluster arrays hold LOCAL indices per level."""

    leaf: np.ndarray  # local level-4 index
    l3: np.ndarray
    l2: np.ndarray
    l1: np.ndarray
    created_s: np.ndarray  # seconds relative to the period start (negative: before it)
    popularity: np.ndarray
    quality: np.ndarray
    visual_richness: np.ndarray
    cue_l3: np.ndarray  # local level-3 index of the cue cluster
    cue_start: np.ndarray
    cue_length: np.ndarray
    title_hint: np.ndarray  # 0: none, 1: names the cue, 2: names a wrong sibling (decoy)

    def __len__(self) -> int:
        return len(self.leaf)


def build_catalog(
    taxonomy: Taxonomy, config: WorldConfig, rules: WorldRules, rng: np.random.Generator
) -> Catalog:
    n_items, n_leaves = config.items, taxonomy.count(4)
    if n_items < n_leaves:
        raise ValueError(
            f"world.items={n_items} is below the {n_leaves} leaf clusters of branching {config.branching}"
        )
    # Every leaf gets one item that exists from the start; the rest are spread uniformly.
    guaranteed = np.zeros(n_items, dtype=bool)
    guaranteed[:n_leaves] = True
    leaf = np.concatenate([np.arange(n_leaves), rng.integers(0, n_leaves, n_items - n_leaves)])
    order = rng.permutation(n_items)
    leaf, guaranteed = leaf[order], guaranteed[order]
    l3 = taxonomy.parent_local(4, leaf)
    l2 = taxonomy.parent_local(3, l3)
    l1 = taxonomy.parent_local(2, l2)

    at_start = guaranteed | (rng.random(n_items) < rules.catalog_at_start_share)
    before = -rng.random(n_items) * rules.pre_period_days * SECONDS_PER_DAY
    during = rng.random(n_items) * config.days * SECONDS_PER_DAY
    created_s = np.where(at_start, before, during)

    popularity = 1.0 / (rng.permutation(n_items) + 1.0) ** rules.zipf_exponent
    quality = rng.beta(2.0, 2.0, n_items)
    visual_richness = rng.beta(2.0, 2.0, n_items)

    siblings = taxonomy.branching[2]
    own_index = taxonomy.sibling_index(3, l3)
    cue_index = (own_index + rng.integers(1, siblings, n_items)) % siblings
    cue_l3 = l2 * siblings + cue_index

    frames = config.video_frames
    cue_length = np.full(n_items, max(1, round(rules.cue_window_share * frames)), dtype=np.int64)
    cue_start = rng.integers(0, frames - cue_length + 1)

    draw = rng.random(n_items)
    title_hint = np.where(
        draw < rules.title_hint_prob, 1, np.where(draw < rules.title_hint_prob + rules.title_decoy_prob, 2, 0)
    )
    return Catalog(
        leaf=leaf,
        l3=l3,
        l2=l2,
        l1=l1,
        created_s=created_s,
        popularity=popularity,
        quality=quality,
        visual_richness=visual_richness,
        cue_l3=cue_l3,
        cue_start=cue_start,
        cue_length=cue_length,
        title_hint=title_hint.astype(np.int8),
    )


def build_texts(
    catalog: Catalog, taxonomy: Taxonomy, rules: WorldRules, rng: np.random.Generator
) -> tuple[list[str], list[str | None]]:
    """Titles (own topic; sometimes a hint word for the cue cluster) and optional captions."""
    n_items = len(catalog)
    siblings = taxonomy.branching[2]
    decoy_shift = rng.integers(1, max(siblings - 1, 1) + 1, n_items)
    cue_index = catalog.cue_l3 % siblings
    own_index = catalog.l3 % siblings
    decoy_index = (cue_index + decoy_shift) % siblings
    # A decoy must name neither the cue nor the item's own cluster; with 2 siblings none exists.
    decoy_index = np.where(decoy_index == own_index, (decoy_index + 1) % siblings, decoy_index)
    decoy_ok = (decoy_index != cue_index) & (decoy_index != own_index)
    hint_l3 = np.where(catalog.title_hint == 1, catalog.cue_l3, catalog.l2 * siblings + decoy_index)
    show_hint = (catalog.title_hint == 1) | ((catalog.title_hint == 2) & decoy_ok)

    openers = np.asarray(TITLE_OPENERS)[rng.integers(0, len(TITLE_OPENERS), n_items)]
    names1, names2, names3, names4 = taxonomy.names
    has_caption = rng.random(n_items) < rules.caption_prob
    titles: list[str] = []
    texts: list[str | None] = []
    for item in range(n_items):
        leaf, l3, l2, l1 = catalog.leaf[item], catalog.l3[item], catalog.l2[item], catalog.l1[item]
        title = f"{openers[item]} {names3[l3]} {names1[l1]}: {names4[leaf]}"
        if show_hint[item]:
            title += f" (ft. {names3[hint_l3[item]]})"
        titles.append(title)
        texts.append(
            f"{names4[leaf]} from the world of {names2[l2]} in {names1[l1]}. #{names3[l3].replace(' ', '')}"
            if has_caption[item]
            else None
        )
    return titles, texts

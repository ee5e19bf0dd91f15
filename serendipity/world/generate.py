"""``generate_world``: build the whole synthetic dataset (contract tables, media, hidden state) atomically."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from serendipity.config import WorldConfig
from serendipity.io import atomic_directory, write_json_atomic, write_parquet_atomic
from serendipity.schema import CLUSTERS_FILE, INTERACTIONS_FILE, INTERACTIONS_SCHEMA, ITEMS_FILE, ITEMS_SCHEMA
from serendipity.world.catalog import Catalog, build_catalog, build_texts
from serendipity.world.logs import Logs, simulate_logs
from serendipity.world.population import Population, build_population
from serendipity.world.render import MediaSpec, media_paths, write_media
from serendipity.world.rules import WorldRules
from serendipity.world.simulator import (
    ITEMS_TRUTH_FILE,
    RULES_FILE,
    TRUTH_DIR,
    USERS_TRUTH_FILE,
    Relation,
    UserSimulator,
)
from serendipity.world.taxonomy import Taxonomy, build_taxonomy

LOG_SOURCE = "logging_policy"


@dataclass
class WorldSummary:
    out_dir: Path
    clusters: int
    items: int
    users: int
    interactions: int
    sessions: int
    media_items: int
    new_items: int  # created during the simulated period
    relation_share: dict[str, float]  # share of logged transitions per Relation
    relation_satisfaction: dict[str, float]  # mean logged satisfaction per Relation
    seconds: dict[str, float] = field(default_factory=dict)


def _check(config: WorldConfig) -> None:
    if config.branching[2] < 2:
        raise ValueError(
            f"world.branching={config.branching}: level-3 clusters need siblings (third factor >= 2) "
            "for serendipitous jumps"
        )
    if config.frame_size % 2:
        raise ValueError(f"world.frame_size={config.frame_size} must be even (H.264 yuv420p)")


def _micros(rules: WorldRules, seconds: np.ndarray) -> pa.Array:
    start = int(rules.period_start.timestamp() * 1_000_000)
    return pa.array(start + np.round(seconds * 1e6).astype(np.int64), pa.timestamp("us", tz="UTC"))


def _items_table(
    taxonomy: Taxonomy, catalog: Catalog, texts: tuple[list[str], list[str | None]], media: np.ndarray,
    rules: WorldRules,
) -> pa.Table:  # fmt: skip
    ids = np.arange(len(catalog), dtype=np.int64)
    thumbs = [media_paths(int(i))[0] if media[i] else None for i in ids]
    videos = [media_paths(int(i))[1] if media[i] else None for i in ids]
    return pa.table(
        {
            "item_id": ids,
            "title": texts[0],
            "text": texts[1],
            "thumbnail_path": thumbs,
            "video_path": videos,
            "c1": taxonomy.cluster_ids(1, catalog.l1),
            "c2": taxonomy.cluster_ids(2, catalog.l2),
            "c3": taxonomy.cluster_ids(3, catalog.l3),
            "c4": taxonomy.cluster_ids(4, catalog.leaf),
            "created_at": _micros(rules, catalog.created_s),
        },
        schema=ITEMS_SCHEMA,
    )


def _items_truth(taxonomy: Taxonomy, catalog: Catalog) -> pa.Table:
    return pa.table(
        {
            "item_id": np.arange(len(catalog), dtype=np.int64),
            "c1": taxonomy.cluster_ids(1, catalog.l1),
            "c2": taxonomy.cluster_ids(2, catalog.l2),
            "c3": taxonomy.cluster_ids(3, catalog.l3),
            "cue_cluster": taxonomy.cluster_ids(3, catalog.cue_l3),
            "visual_richness": catalog.visual_richness,
            "quality": catalog.quality,
            "popularity": catalog.popularity,
            "cue_start": catalog.cue_start,
            "cue_length": catalog.cue_length,
            "title_hint": catalog.title_hint,
        }
    )


def _users_truth(taxonomy: Taxonomy, population: Population) -> pa.Table:
    used = population.favourite_l2 >= 0
    l2_ids = np.where(used, taxonomy.cluster_ids(2, np.maximum(population.favourite_l2, 0)), -1)
    l1_ids = np.where(
        used, taxonomy.cluster_ids(1, taxonomy.parent_local(2, np.maximum(population.favourite_l2, 0))), -1
    )
    slots = population.favourite_l2.shape[1]

    def fixed_list(values: np.ndarray, kind: pa.DataType) -> pa.Array:
        return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), kind), slots)

    return pa.table(
        {
            "user_id": np.arange(len(population), dtype=np.int64),
            "openness": population.openness,
            "activity": population.activity,
            "favourite_l1": fixed_list(l1_ids, pa.int64()),
            "favourite_l2": fixed_list(l2_ids, pa.int64()),
            "favourite_weight": fixed_list(population.favourite_weight, pa.float64()),
        }
    )


def _media_selection(config: WorldConfig, item_count: int, logged_items: np.ndarray) -> np.ndarray:
    """Boolean mask of the items that get media."""
    if config.media == "all":
        return np.ones(item_count, dtype=bool)
    if config.media == "none":
        return np.zeros(item_count, dtype=bool)
    impressions = np.bincount(logged_items, minlength=item_count)
    order = np.argsort(-impressions, kind="stable")
    share_before = (np.cumsum(impressions[order]) - impressions[order]) / max(impressions.sum(), 1)
    selected = np.zeros(item_count, dtype=bool)
    selected[order[(share_before < config.media_popular_share) & (impressions[order] > 0)]] = True
    return selected


def _relation_stats(
    relation: np.ndarray, satisfaction: np.ndarray
) -> tuple[dict[str, float], dict[str, float]]:
    counts = np.bincount(relation, minlength=len(Relation))
    sums = np.bincount(relation, weights=satisfaction, minlength=len(Relation))
    share = {r.name.lower(): float(counts[r] / max(len(relation), 1)) for r in Relation}
    mean = {r.name.lower(): float(sums[r] / counts[r]) for r in Relation if counts[r]}
    return share, mean


@dataclass(frozen=True)
class _Platform:
    taxonomy: Taxonomy
    catalog: Catalog
    texts: tuple[list[str], list[str | None]]  # titles, texts
    population: Population


@dataclass(frozen=True)
class _LoggedPeriod:
    logs: Logs
    simulator: UserSimulator
    satisfaction: np.ndarray
    relation: np.ndarray  # the Relation of each logged transition
    interactions: pa.Table


def _build_platform(config: WorldConfig, rules: WorldRules, streams: list[np.random.Generator]) -> _Platform:
    taxonomy = build_taxonomy(config.branching, streams[0])
    catalog = build_catalog(taxonomy, config, rules, streams[1])
    texts = build_texts(catalog, taxonomy, rules, streams[2])
    l2_mass = np.bincount(catalog.l2, weights=catalog.popularity, minlength=taxonomy.count(2))
    population = build_population(config.users, np.maximum(l2_mass, 1e-12), rules, streams[3])
    return _Platform(taxonomy, catalog, texts, population)


def _log_period(
    platform: _Platform, config: WorldConfig, rules: WorldRules, streams: list[np.random.Generator]
) -> _LoggedPeriod:
    taxonomy, catalog = platform.taxonomy, platform.catalog
    logs: Logs = simulate_logs(
        taxonomy, catalog, platform.population, config.interactions, config.days, rules, streams[4]
    )
    simulator = UserSimulator(
        rules, _items_truth(taxonomy, catalog), _users_truth(taxonomy, platform.population)
    )
    satisfaction = simulator.satisfaction(logs.user, logs.item, logs.context, streams[5])
    relation = simulator.relation(logs.item, logs.context)
    interactions = pa.table(
        {
            "user_id": logs.user.astype(np.int64),
            "item_id": logs.item,
            "ts": _micros(rules, logs.ts_s),
            "satisfaction": satisfaction,
            "impression": np.ones(len(logs.item), dtype=bool),
            "source": pa.repeat(pa.scalar(LOG_SOURCE, pa.string()), len(logs.item)),
        },
        schema=INTERACTIONS_SCHEMA,
    )
    return _LoggedPeriod(logs, simulator, satisfaction, relation, interactions)


def _media_spec(
    platform: _Platform, config: WorldConfig, rules: WorldRules, with_media: np.ndarray
) -> MediaSpec:
    taxonomy, catalog = platform.taxonomy, platform.catalog
    media_ids = np.flatnonzero(with_media)
    return MediaSpec(
        item_ids=media_ids,
        l1_index=catalog.l1[media_ids] % config.branching[0],
        l2_index=taxonomy.sibling_index(2, catalog.l2[media_ids]),
        l3_index=taxonomy.sibling_index(3, catalog.l3[media_ids]),
        l4_index=taxonomy.sibling_index(4, catalog.leaf[media_ids]),
        cue_index=taxonomy.sibling_index(3, catalog.cue_l3[media_ids]),
        visual_richness=catalog.visual_richness[media_ids],
        cue_start=catalog.cue_start[media_ids],
        cue_length=catalog.cue_length[media_ids],
        branching=config.branching,
        frame_size=config.frame_size,
        frames=config.video_frames,
        fps=config.video_fps,
        seed=config.seed,
        glyph_contrast_min=rules.glyph_contrast_min,
    )


def _write_tables(
    staging: Path, platform: _Platform, period: _LoggedPeriod, items: pa.Table, config: WorldConfig,
    rules: WorldRules,
) -> None:  # fmt: skip
    """The contract tables and the hidden state (``_world/``) the user simulator loads."""
    write_parquet_atomic(platform.taxonomy.clusters_table(), staging / CLUSTERS_FILE)
    write_parquet_atomic(items, staging / ITEMS_FILE)
    write_parquet_atomic(period.interactions, staging / INTERACTIONS_FILE)
    write_parquet_atomic(period.simulator.items, staging / TRUTH_DIR / ITEMS_TRUTH_FILE)
    write_parquet_atomic(period.simulator.users, staging / TRUTH_DIR / USERS_TRUTH_FILE)
    write_json_atomic(
        {"rules": rules.to_json(), "config": config.model_dump(mode="json")},
        staging / TRUTH_DIR / RULES_FILE,
    )


def _summary(
    out_dir: Path,
    platform: _Platform,
    period: _LoggedPeriod,
    with_media: np.ndarray,
    seconds: dict[str, float],
) -> WorldSummary:
    share, mean = _relation_stats(period.relation, period.satisfaction)
    logs, catalog = period.logs, platform.catalog
    return WorldSummary(
        out_dir=out_dir,
        clusters=len(platform.taxonomy.clusters_table()),
        items=len(catalog),
        users=len(platform.population),
        interactions=len(logs.item),
        sessions=int(logs.session[-1]) + 1 if len(logs.session) else 0,
        media_items=int(with_media.sum()),
        new_items=int((catalog.created_s > 0).sum()),
        relation_share=share,
        relation_satisfaction=mean,
        seconds=seconds,
    )


def generate_world(out_dir: Path, config: WorldConfig, rules: WorldRules | None = None) -> WorldSummary:
    """Generate the dataset at ``out_dir`` (replaced atomically). Same config and seed, same tables."""
    _check(config)
    rules = rules or WorldRules()
    out_dir = Path(out_dir)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(6)]
    platform = _build_platform(config, rules, streams)
    seconds["catalog"] = time.perf_counter() - clock

    clock = time.perf_counter()
    period = _log_period(platform, config, rules, streams)
    seconds["logs"] = time.perf_counter() - clock

    with_media = _media_selection(config, len(platform.catalog), period.logs.item)
    items = _items_table(platform.taxonomy, platform.catalog, platform.texts, with_media, rules)
    with atomic_directory(out_dir) as staging:
        clock = time.perf_counter()
        write_media(staging, _media_spec(platform, config, rules, with_media), workers=config.media_workers)
        seconds["media"] = time.perf_counter() - clock
        clock = time.perf_counter()
        _write_tables(staging, platform, period, items, config, rules)
        seconds["write"] = time.perf_counter() - clock
    return _summary(out_dir, platform, period, with_media, seconds)

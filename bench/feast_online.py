"""Feast benchmark: materialisation rows/s and single-entity online read latency, SQLite vs Redis.

Synthetic sources (contract schemas) for ``--items`` items and ``--users`` users under a temporary
work_dir. Prints a table and writes bench/results/feast_online.json; never asserts on time.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from features.definitions import apply_definitions
from serendipity.config import PipelineConfig, load_config
from serendipity.feature_store import PROJECT_ROOT, ServingFeatures
from serendipity.io import write_json_atomic, write_parquet_atomic
from serendipity.layout import WorkLayout
from serendipity.schema import (
    ALTERNATIVE_SCORES_COLUMN,
    ALTERNATIVES_FEATURE,
    EVENT_TIMESTAMP,
    IMPRESSIONS_FEATURE,
    ITEM_JOIN_KEY,
    ITEM_META_SCHEMA,
    LEVEL_COLUMNS,
    MEDIA_FALLBACK_COLUMN,
    MODEL_VERSION_FEATURE,
    PROMPT_STYLE_COLUMN,
    REASONING_FEATURE,
    RECENT_ITEMS_FEATURE,
    SERENDIPITOUS_CLUSTER_FEATURE,
    SERENDIPITOUS_DESCRIPTION_FEATURE,
    SERENDIPITY_SCHEMA,
    SERENDIPITY_SCORE_FEATURE,
    USER_HISTORY_SCHEMA,
    USER_JOIN_KEY,
)

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "feast_online.json"


def write_sources(config: PipelineConfig, items: int, users: int, stamp: datetime, seed: int = 0) -> int:
    """Random rows following the contract schemas; returns the number of source rows written."""
    rng = np.random.default_rng(seed)
    layout = WorkLayout.of(config)
    item_ids = np.arange(items, dtype=np.int64)
    clusters = rng.integers(0, 1000, size=(items, 4))
    serendipity = {
        ITEM_JOIN_KEY: item_ids,
        SERENDIPITOUS_CLUSTER_FEATURE: rng.integers(0, 1000, size=items),
        SERENDIPITOUS_DESCRIPTION_FEATURE: [f"cluster {c}" for c in clusters[:, 2]],
        SERENDIPITY_SCORE_FEATURE: rng.random(items),
        ALTERNATIVES_FEATURE: [list(row) for row in rng.integers(0, 1000, size=(items, 2))],
        ALTERNATIVE_SCORES_COLUMN: [[0.5, 0.25]] * items,
        REASONING_FEATURE: ["bench"] * items,
        MEDIA_FALLBACK_COLUMN: [False] * items,
        MODEL_VERSION_FEATURE: ["bench"] * items,
        PROMPT_STYLE_COLUMN: ["video_cot"] * items,
        EVENT_TIMESTAMP: [stamp] * items,
    }
    meta = {
        ITEM_JOIN_KEY: item_ids,
        **{column: clusters[:, level] for level, column in enumerate(LEVEL_COLUMNS)},
        IMPRESSIONS_FEATURE: rng.integers(0, 10_000, size=items),
        EVENT_TIMESTAMP: [stamp] * items,
    }
    length = config.features.history_length
    history = {
        USER_JOIN_KEY: np.arange(users, dtype=np.int64),
        RECENT_ITEMS_FEATURE: [list(row) for row in rng.integers(0, items, size=(users, length))],
        EVENT_TIMESTAMP: [stamp] * users,
    }
    write_parquet_atomic(pa.table(serendipity, schema=SERENDIPITY_SCHEMA), layout.serendipity_path)
    write_parquet_atomic(pa.table(meta, schema=ITEM_META_SCHEMA), layout.item_meta_path)
    write_parquet_atomic(pa.table(history, schema=USER_HISTORY_SCHEMA), layout.user_history_path)
    return 2 * items + users


def start_redis(directory: Path) -> tuple[subprocess.Popen, str] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    import redis

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = subprocess.Popen([*args, "--dir", str(directory)], stdout=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(100):
        try:
            client.ping()
            return server, f"127.0.0.1:{port}"
        except redis.ConnectionError:
            time.sleep(0.1)
    server.terminate()
    return None


def redis_yaml(directory: Path, connection_string: str) -> Path:
    path = directory / "feature_store.yaml"
    path.write_text(
        "project: serendipity\nprovider: local\n"
        f"registry:\n  path: {directory / 'registry.db'}\n  cache_ttl_seconds: 0\n"
        "offline_store:\n  type: file\n"
        f"online_store:\n  type: redis\n  connection_string: '{connection_string}'\n"
        "entity_key_serialization_version: 3\n"
    )
    return path


def latency_ms(read: Callable[[int], object], reads: int, entities: int, seed: int = 1) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, entities, size=reads + 50)
    for key in keys[:50]:  # warm-up
        read(int(key))
    timings = []
    for key in keys[50:]:
        started = time.perf_counter()
        read(int(key))
        timings.append((time.perf_counter() - started) * 1000)
    return {
        "reads": reads,
        "p50_ms": float(np.percentile(timings, 50)),
        "p99_ms": float(np.percentile(timings, 99)),
        "mean_ms": float(np.mean(timings)),
    }


def bench_store(features: ServingFeatures, end: datetime, rows: int, reads: int, items: int) -> dict:
    apply_definitions(features)
    started = time.perf_counter()
    features.materialize_incremental(end)
    seconds = time.perf_counter() - started
    service = features.service
    store = features.store

    def feast_read(key: int) -> object:
        return store.get_online_features(
            features=service, entity_rows=[{ITEM_JOIN_KEY: key, USER_JOIN_KEY: key}]
        ).to_dict()

    def library_read(key: int) -> object:
        return features.online_features([key], [key], now=end)

    def library_columns_read(key: int) -> object:
        return features.online_columns([key], [key], now=end)

    return {
        "materialize": {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds},
        "online_feast_get_online_features": latency_ms(feast_read, reads, items),
        "online_library_online_features": latency_ms(library_read, reads, items),
        "online_library_online_columns": latency_ms(library_columns_read, reads, items),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--reads", type=int, default=1_000)
    args = parser.parse_args(argv)
    results: dict = {"items": args.items, "users": args.users, "stores": {}}
    with tempfile.TemporaryDirectory(prefix="feast_bench_") as scratch:
        root = Path(scratch)
        config = load_config(
            PROJECT_ROOT / "configs" / "test.yaml",
            overrides={"dataset_dir": str(root / "dataset"), "work_dir": str(root / "work")},
        )
        stamp = datetime.now(UTC) - timedelta(hours=1)
        rows = write_sources(config, args.items, args.users, stamp)
        end = stamp + timedelta(minutes=1)
        results["stores"]["sqlite"] = bench_store(ServingFeatures(config), end, rows, args.reads, args.users)
        redis = start_redis(root)
        if redis is None:
            results["stores"]["redis"] = {"skipped": "redis-server not installed"}
        else:
            server, url = redis
            try:
                redis_dir = root / "redis_feast"
                redis_dir.mkdir()
                on_redis = ServingFeatures(config, redis_yaml(redis_dir, url))
                results["stores"]["redis"] = bench_store(on_redis, end, rows, args.reads, args.users)
            finally:
                server.terminate()
                server.wait(timeout=10)
    write_json_atomic(results, RESULTS_PATH)
    for name, store in results["stores"].items():
        if "skipped" in store:
            print(f"{name}: skipped ({store['skipped']})")
            continue
        mat = store["materialize"]
        rate = f"{mat['rows_per_s']:,.0f} rows/s"
        print(f"{name}: materialise {mat['rows']:,} rows in {mat['seconds']:.1f} s = {rate}")
        for kind in [key for key in store if key.startswith("online_")]:
            lat = store[kind]
            print(
                f"  {kind}: p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms over {lat['reads']} reads"
            )
    print(f"wrote {RESULTS_PATH}")


if __name__ == "__main__":
    main()

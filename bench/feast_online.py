"""Feast benchmark: materialisation rows/s and single-entity online read latency, SQLite vs Redis, and
Feast's local materialisation engine vs its Spark engine (``batch_engine: spark.engine``, as in
infra/feast/prod/feature_store.yaml; here on local Spark) into Redis.

Synthetic sources (contract schemas) for ``--items`` items and ``--users`` users under a temporary
work_dir (rows = 2 x items + users). Prints a table and writes bench/results/feast_online.json; never
asserts on time. E.g. 1M rows: ``python -m bench.feast_online --items 450000 --users 100000``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from devtools.feast_sources import write_sources
from devtools.services import redis_available, redis_server
from features.definitions import apply_definitions
from serendipity.config import load_config
from serendipity.feature_store import PROJECT_ROOT, ServingFeatures
from serendipity.io import write_json_atomic
from serendipity.schema import ITEM_JOIN_KEY, USER_JOIN_KEY

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "feast_online.json"


def redis_yaml(directory: Path, connection_string: str, engine: str = "local") -> Path:
    """Redis online store; the local engine over the file offline store, or the Spark engine over the
    Spark offline store (local Spark) as the prod yaml has them."""
    offline = "offline_store:\n  type: file\n"
    if engine == "spark":
        spark_conf = "  spark_conf:\n    spark.master: local[*]\n    spark.sql.session.timeZone: UTC\n"
        engine_section = f"batch_engine:\n  type: spark.engine\n{spark_conf}"
        offline = f"offline_store:\n  type: spark\n{spark_conf}{engine_section}"
    path = directory / "feature_store.yaml"
    path.write_text(
        "project: serendipity\nprovider: local\n"
        f"registry:\n  path: {directory / 'registry.db'}\n  cache_ttl_seconds: 0\n"
        f"{offline}"
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


STORES = ("sqlite", "redis", "redis_spark_engine")


def warm_up_spark() -> None:
    """Start the local Spark session (JVM launch) before the Spark engine is timed; Feast reuses it."""
    from spark_jobs.common import get_spark

    get_spark().range(10).count()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--reads", type=int, default=1_000)
    parser.add_argument("--stores", nargs="+", default=list(STORES), choices=STORES)
    args = parser.parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the Spark engine's Python workers
    results: dict = {
        "items": args.items,
        "users": args.users,
        "command": f"python -m bench.feast_online --items {args.items} --users {args.users} --stores "
        + " ".join(args.stores),
        "load_average_1min_before": round(os.getloadavg()[0], 2),
        "stores": {},
    }
    with tempfile.TemporaryDirectory(prefix="feast_bench_") as scratch:
        root = Path(scratch)
        config = load_config(
            PROJECT_ROOT / "configs" / "test.yaml",
            overrides={"dataset_dir": str(root / "dataset"), "work_dir": str(root / "work")},
        )
        stamp = datetime.now(UTC) - timedelta(hours=1)
        rows = write_sources(config, args.items, args.users, stamp)
        results["rows"] = rows
        end = stamp + timedelta(minutes=1)
        if "sqlite" in args.stores:
            sqlite = ServingFeatures(config)
            results["stores"]["sqlite"] = bench_store(sqlite, end, rows, args.reads, args.users)
        for name, engine in (("redis", "local"), ("redis_spark_engine", "spark")):
            if name not in args.stores:
                continue
            if not redis_available():
                results["stores"][name] = {"skipped": "redis-server not installed"}
                continue
            if engine == "spark":
                warm_up_spark()
            with redis_server(root) as url:
                redis_dir = root / f"{name}_feast"
                redis_dir.mkdir()
                on_redis = ServingFeatures(config, redis_yaml(redis_dir, url, engine))
                results["stores"][name] = {"engine": engine} | bench_store(
                    on_redis, end, rows, args.reads, args.users
                )
    results["load_average_1min_after"] = round(os.getloadavg()[0], 2)
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

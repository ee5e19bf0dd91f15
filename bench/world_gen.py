"""Benchmark: synthetic-world generation speed (interactions/s, items/s, with and without media).

Prints the figures and saves them as JSON under bench/results/; never asserts.

    .venv/bin/python -m bench.world_gen                       # 10M interactions, 100k items, --media popular
    .venv/bin/python -m bench.world_gen --interactions 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from serendipity.config import WorldConfig
from serendipity.world import generate_world

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the media workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--interactions", type=int, default=10_000_000)
    parser.add_argument("--media", choices=["all", "popular", "none"], default="popular")
    parser.add_argument("--media-popular-share", type=float, default=0.9)
    parser.add_argument("--branching", default="3,3,4,2")
    parser.add_argument("--workers", type=int, default=2, help="media processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=None, help="keep the dataset here (default: temp, deleted)"
    )
    parser.add_argument("--results", type=Path, default=None, help="JSON path (default: bench/results/)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    config = WorldConfig(
        items=args.items,
        users=args.users,
        interactions=args.interactions,
        media=args.media,
        media_popular_share=args.media_popular_share,
        branching=tuple(int(b) for b in args.branching.split(",")),
        seed=args.seed,
        media_workers=args.workers,
    )
    scratch = None if args.out else Path(tempfile.mkdtemp(prefix="world_gen_"))
    out = args.out or scratch / "dataset"  # type: ignore[operator]
    try:
        cpu_before = _cpu_seconds()
        started = time.perf_counter()
        summary = generate_world(out, config)
        total = time.perf_counter() - started
        cpu_total = _cpu_seconds() - cpu_before
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    tables_seconds = total - summary.seconds.get("media", 0.0)
    media_seconds = summary.seconds.get("media", 0.0)
    result = {
        "config": config.model_dump(mode="json"),
        "cpu_count": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "seconds_total": total,
        "seconds_by_stage": summary.seconds,
        # On a shared machine wall time mostly measures the neighbours; CPU time is the cost.
        "cpu_seconds_total": cpu_total,
        "seconds_without_media": tables_seconds,
        "interactions_per_s_without_media": summary.interactions / tables_seconds,
        "items_per_s_without_media": summary.items / tables_seconds,
        "interactions_per_s_with_media": summary.interactions / total,
        "items_per_s_with_media": summary.items / total,
        "media_items": summary.media_items,
        "media_items_per_s": summary.media_items / media_seconds if media_seconds > 0 else None,
        "sessions": summary.sessions,
        "relation_share": summary.relation_share,
        "relation_satisfaction": summary.relation_satisfaction,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    path = args.results or RESULTS_DIR / f"world_gen_{args.interactions}_{args.media}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"saved {path}")
    return result


if __name__ == "__main__":
    main()

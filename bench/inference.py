"""Ray Data batch inference vs a plain in-process loop; 1 vs 2 actors; full vs incremental runs.

Prints and saves ``bench/results/inference.json``; never asserts. A synthetic world (a few hundred
items with media) and the tiny default VLM (randomly initialised: same cost per item as a trained
one) are built in a scratch directory; the corpus is every item but the last 5%, which a second run
adds as new items. Figures: items/s of the job (end to end: Ray Data start, actor model load,
decode, predict, commit, compaction) and of a plain loop over the same model, batch size and items
(model load, decode, predict; one torch thread, like a one-CPU actor); their ratio (target >= 0.8
with one actor) end to end and after startup (job: after its first batch; loop: after model load);
1 vs 2 actors; the full run's time over the incremental run's (target >= 10); peak RSS of the
driver and of the predictor actors.
Usage: ``.venv/bin/python -m bench.inference --items 300``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from serendipity.config import PipelineConfig, WorldConfig, config_from_dict
from serendipity.io import write_json_atomic, write_parquet_atomic
from serendipity.layout import WorkLayout
from serendipity.schema import CLUSTERS_FILE, ITEMS_FILE

RESULTS = Path(__file__).resolve().parent / "results" / "inference.json"
NEW_SHARE = 0.05


def build_inputs(scratch: Path, items: int) -> tuple[Path, list[int]]:
    """A world with media, its catalog copied where inference reads it, and a tiny model."""
    import pyarrow.parquet as pq

    from serendipity.mllm.tiny import init_tiny_model
    from serendipity.world import generate_world

    dataset = scratch / "dataset"
    world = WorldConfig(items=items, users=50, interactions=2000, branching=(2, 2, 3, 2), seed=3, media="all")
    generate_world(dataset, world)
    init_tiny_model(scratch / "base-model", dataset)
    item_ids = sorted(pq.read_table(dataset / ITEMS_FILE, columns=["item_id"]).column("item_id").to_pylist())
    return dataset, item_ids


def job_config(scratch: Path, dataset: Path, name: str, num_actors: int, batch_size: int) -> PipelineConfig:
    work = scratch / name
    layout = WorkLayout(work)
    layout.validated_dir.mkdir(parents=True, exist_ok=True)
    for table in (CLUSTERS_FILE, ITEMS_FILE):
        shutil.copy(dataset / table, layout.validated_dir / table)
    layout.models_dir.parent.mkdir(parents=True, exist_ok=True)
    if not layout.models_dir.exists():
        layout.models_dir.symlink_to(scratch / "base-model", target_is_directory=True)
    data = {
        "dataset_dir": str(dataset),
        "work_dir": str(work),
        "inference": {"num_actors": num_actors, "batch_size": batch_size},
    }
    return config_from_dict(data, scratch)


def write_corpus(config: PipelineConfig, item_ids: list[int]) -> None:
    write_parquet_atomic(
        pa.table({"item_id": pa.array(item_ids, pa.int64())}), WorkLayout.of(config).corpus_path
    )


def plain_loop(config: PipelineConfig, item_ids: list[int]) -> dict[str, Any]:
    """The same model, batch size and items without Ray: load, decode, predict, one torch thread."""
    import pyarrow.parquet as pq
    import torch

    from serendipity.mllm.predictor import item_media_from_row, predictor_from_config

    torch.set_num_threads(1)
    clock = time.perf_counter()
    predictor = predictor_from_config(config, WorkLayout.of(config).models_dir)
    loaded = time.perf_counter()
    rows = pq.read_table(WorkLayout.of(config).validated_dir / ITEMS_FILE).to_pandas()
    rows = rows[rows["item_id"].isin(item_ids)].to_dict("records")
    size = config.inference.batch_size
    answered = 0
    with torch.inference_mode():
        for start in range(0, len(rows), size):
            media = [
                item_media_from_row(
                    row,
                    config.dataset_dir,
                    config.mllm.prompt_style,
                    config.mllm.num_frames,
                    config.mllm.image_size,
                )
                for row in rows[start : start + size]
            ]
            answered += len(predictor.predict(media))
    seconds = time.perf_counter() - clock
    return {
        "items": answered,
        "seconds": round(seconds, 3),
        "model_load_seconds": round(loaded - clock, 3),
        "items_per_s": round(answered / seconds, 3),
        "items_per_s_after_load": round(answered / (seconds - (loaded - clock)), 3),
    }


def job_run(config: PipelineConfig) -> dict[str, Any]:
    from ray_jobs import infer

    summary = infer.run(config)
    inferred = summary.tally.inferred
    items_per_s = round(inferred / summary.seconds, 3) if inferred else None
    return {**summary.to_json(), "items_per_s": items_per_s}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import ray

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--scratch", type=Path, default=None, help="kept when given; a temp dir otherwise")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="bench-inference-"))
    scratch.mkdir(parents=True, exist_ok=True)
    dataset, item_ids = build_inputs(scratch, args.items)
    old_items = item_ids[: int(len(item_ids) * (1 - NEW_SHARE))]

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    one = job_config(scratch, dataset, "one-actor", 1, args.batch_size)
    write_corpus(one, old_items)
    full = job_run(one)
    write_corpus(one, item_ids)
    incremental = job_run(one)
    two = job_config(scratch, dataset, "two-actors", 2, args.batch_size)
    write_corpus(two, old_items)
    two_actors = job_run(two)
    ray.shutdown()
    driver_peak = full["driver_peak_rss_mb"]
    loop = plain_loop(one, old_items)

    results = {
        "items": len(old_items),
        "new_items": len(item_ids) - len(old_items),
        "batch_size": args.batch_size,
        "prompt_style": one.mllm.prompt_style,
        "plain_loop": loop,
        "job_one_actor": full,
        "job_two_actors": two_actors,
        "job_incremental": incremental,
        "job_over_loop_items_per_s": round(full["items_per_s"] / loop["items_per_s"], 3),
        "job_over_loop_after_startup": round(full["steady_items_per_s"] / loop["items_per_s_after_load"], 3),
        "two_over_one_actor_items_per_s": round(two_actors["items_per_s"] / full["items_per_s"], 3),
        "full_over_incremental_seconds": round(full["seconds"] / incremental["seconds"], 3),
        "driver_peak_rss_mb": round(driver_peak, 1),
        "actor_peak_rss_mb": round(max(full["actor_peak_rss_mb"], two_actors["actor_peak_rss_mb"]), 1),
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
            "python": platform.python_version(),
        },
    }
    print(json.dumps(results, indent=2))
    write_json_atomic(results, RESULTS)
    if args.scratch is None:
        shutil.rmtree(scratch, ignore_errors=True)
    return results


if __name__ == "__main__":
    main()

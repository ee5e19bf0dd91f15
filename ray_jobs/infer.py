"""Ray Data batch inference: serendipitous_cluster(context_item) for the popular corpus, incrementally.

    python -m ray_jobs.infer --config configs/demo.yaml            # in-process, local Ray
    ray job submit --working-dir . -- python -m ray_jobs.infer --config configs/demo.yaml

Stages: hash item inputs and plan against the manifest (driver) -> decode media (CPU tasks) ->
predict (an actor pool; one GPU per actor when configured). Each actor commits every finished batch
as its own part file, so a killed run resumes without re-inferring any batch that was finished;
the final compaction replaces the output table atomically.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import time
from pathlib import Path
from typing import Any

import pandas as pd

from serendipity.config import InferenceConfig, PipelineConfig, load_config
from serendipity.inference import (
    InferenceStore,
    append_audit,
    content_hashes,
    load_corpus_items,
    prediction_rows,
)
from serendipity.io import write_json_atomic
from serendipity.layout import WorkLayout

log = logging.getLogger("serendipity.infer")


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _decode_batch(batch: pd.DataFrame, dataset_dir: str, style: str, frames: int, size: int) -> pd.DataFrame:
    from serendipity.mllm.prompts import decode_item_media

    media = [decode_item_media(row, dataset_dir, style, frames, size) for row in batch.to_dict("records")]
    return pd.DataFrame({"item_id": batch["item_id"], "content_hash": batch["content_hash"], "media": media})


class PredictBatch:
    """Actor: loads the model once, predicts a batch, commits it as a part file, returns a summary.

    Predictions never travel back through the object store; a failing item never sinks its batch.
    """

    def __init__(self, config: dict[str, Any], model_dir: str, started: str) -> None:
        from serendipity.mllm.predictor import predictor_from_config

        self.config = PipelineConfig.model_validate(config)
        self.predictor = predictor_from_config(self.config, model_dir)
        self.store = InferenceStore.of(WorkLayout.of(self.config))
        self.started = pd.Timestamp(started)

    def _predict_each(self, media: list[Any]) -> tuple[list[Any], list[str | None]]:
        predictions, errors = [], []
        for item in media:
            try:
                predictions.append(self.predictor.predict([item])[0])
                errors.append(None)
            except Exception as error:  # noqa: BLE001 - recorded per item in the errors table
                predictions.append([])
                errors.append(f"prediction failed: {type(error).__name__}: {error}")
        return predictions, errors

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        import torch

        media = list(batch["media"])
        with torch.inference_mode():
            try:
                predictions, errors = self.predictor.predict(media), [None] * len(media)
            except Exception:  # noqa: BLE001 - retry one by one to isolate the failing items
                predictions, errors = self._predict_each(media)
        version = self.predictor.model_version
        if self.config.inference.audit_log:
            append_audit(self.config.inference.audit_log, batch["item_id"].tolist(), version)
        failed = pd.Series([e is not None for e in errors], index=batch.index)
        ok = batch[~failed]
        rows, unmapped = prediction_rows(
            ok["item_id"].tolist(),
            ok["content_hash"].tolist(),
            [p for p, bad in zip(predictions, failed, strict=True) if not bad],
            [m.media_fallback for m, bad in zip(media, failed, strict=True) if not bad],
            version,
            self.config.mllm.prompt_style,
            self.started,
        )
        crashed = pd.DataFrame(
            {
                "item_id": batch.loc[failed, "item_id"],
                "content_hash": batch.loc[failed, "content_hash"],
                "model_version": version,
                "reason": [e for e in errors if e is not None],
                "event_timestamp": self.started,
            }
        )
        self.store.write_part(rows, pd.concat([unmapped, crashed], ignore_index=True))
        return pd.DataFrame(
            {
                "item_id": batch["item_id"],
                "ok": batch["item_id"].isin(rows["item_id"]),
                "media_fallback": [m.media_fallback for m in media],
                "actor_peak_rss_mb": peak_rss_mb(),
            }
        )


def decode_tasks(settings: InferenceConfig, cluster_cpus: float) -> int:
    """Concurrent decode tasks: a CPU stage of its own, unless CPU actors leave it no CPU.

    With as many decode tasks as actors (and no GPUs) Ray Data fuses decoding into the actors, which
    is what we want when the actors take every CPU: a separate stage would wait forever for one.
    """
    if settings.num_gpus_per_actor == 0 and settings.num_actors >= cluster_cpus:
        return settings.num_actors
    return settings.decode_concurrency


def _chunks(frame: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    return [frame.iloc[start : start + size].reset_index(drop=True) for start in range(0, len(frame), size)]


def _predict_all(config: PipelineConfig, todo: pd.DataFrame, model_dir: Path, started: pd.Timestamp) -> dict:
    import ray
    from ray.data import ActorPoolStrategy, TaskPoolStrategy

    settings = config.inference
    summaries = (
        ray.data.from_pandas(_chunks(todo, settings.batch_size))
        .map_batches(
            _decode_batch,
            fn_kwargs={
                "dataset_dir": str(config.dataset_dir),
                "style": config.mllm.prompt_style,
                "frames": config.mllm.num_frames,
                "size": config.mllm.image_size,
            },
            batch_format="pandas",
            batch_size=settings.batch_size,
            compute=TaskPoolStrategy(size=decode_tasks(settings, ray.cluster_resources().get("CPU", 1.0))),
        )
        .map_batches(
            PredictBatch,
            fn_constructor_kwargs={
                "config": config.model_dump(mode="json"),
                "model_dir": str(model_dir),
                "started": started.isoformat(),
            },
            batch_format="pandas",
            batch_size=settings.batch_size,
            compute=ActorPoolStrategy(
                size=settings.num_actors, max_tasks_in_flight_per_actor=settings.tasks_in_flight_per_actor
            ),
            num_gpus=settings.num_gpus_per_actor or None,
        )
    )
    totals = {"inferred": 0, "inferred_ok": 0, "media_fallback": 0, "actor_peak_rss_mb": 0.0}
    clock, first_batch, first_size = time.perf_counter(), None, 0
    for summary in summaries.iter_batches(batch_format="pandas", batch_size=None):
        if first_batch is None:
            first_batch, first_size = time.perf_counter(), len(summary)
        totals["inferred"] += len(summary)
        totals["inferred_ok"] += int(summary["ok"].sum())
        totals["media_fallback"] += int(summary["media_fallback"].sum())
        totals["actor_peak_rss_mb"] = max(
            totals["actor_peak_rss_mb"], float(summary["actor_peak_rss_mb"].max())
        )
        log.info("inferred %d / %d items", totals["inferred"], len(todo))
    if first_batch is not None:
        # Startup (actors, model loads) until the first batch; throughput after it.
        totals["first_batch_seconds"] = round(first_batch - clock, 3)
        after = time.perf_counter() - first_batch
        steady = (totals["inferred"] - first_size) / after if after > 0 else None
        totals["steady_items_per_s"] = round(steady, 3) if steady else None
    return totals


def _predict_in_process(
    config: PipelineConfig, todo: pd.DataFrame, model_dir: Path, started: pd.Timestamp
) -> dict:
    """A small delta in the driver: the same decode and predictor code, without actor startup."""
    predictor = PredictBatch(config.model_dump(mode="json"), str(model_dir), started.isoformat())
    mllm = config.mllm
    summaries = [
        predictor(
            _decode_batch(chunk, str(config.dataset_dir), mllm.prompt_style, mllm.num_frames, mllm.image_size)
        )
        for chunk in _chunks(todo, config.inference.batch_size)
    ]
    summary = pd.concat(summaries, ignore_index=True)
    return {
        "inferred": len(summary),
        "inferred_ok": int(summary["ok"].sum()),
        "media_fallback": int(summary["media_fallback"].sum()),
        "actor_peak_rss_mb": 0.0,
        "in_process": True,
    }


def run_inference(config: PipelineConfig, model_dir: Path | None = None, delta_only: bool = False) -> dict:
    """Infer every corpus item not yet done under the current model version; returns run figures."""
    from serendipity.mllm.model import model_version, resolve_model_dir

    clock = time.perf_counter()
    layout = WorkLayout.of(config)
    model_dir = resolve_model_dir(model_dir or layout.models_dir)
    version = model_version(model_dir)
    store = InferenceStore.of(layout)
    started = pd.Timestamp.now(tz="UTC")
    items, missing = load_corpus_items(layout, delta_only, version, started)
    store.write_part(pd.DataFrame(), missing)
    items = items.assign(content_hash=content_hashes(items, config.dataset_dir).astype(str))
    todo = store.plan(items, version)
    log.info("corpus %d items, %d to infer under model %s", len(items), len(todo), version)
    totals = {"inferred": 0, "inferred_ok": 0, "media_fallback": 0, "actor_peak_rss_mb": 0.0}
    if (
        len(todo)
        and len(todo) < config.inference.in_process_below
        and not config.inference.num_gpus_per_actor
    ):
        totals = _predict_in_process(config, todo, model_dir, started)
    elif len(todo):
        totals = _predict_all(config, todo, model_dir, started)
    output_rows, error_rows = store.compact()
    figures = {
        "corpus_items": len(items) + len(missing),
        "to_infer": len(todo),
        **totals,
        "output_rows": output_rows,
        "error_rows": error_rows,
        "model_version": version,
        "seconds": round(time.perf_counter() - clock, 3),
        "driver_peak_rss_mb": peak_rss_mb(),
    }
    write_json_atomic(figures, layout.job_stats_path("infer"))
    return figures


def main(argv: list[str] | None = None) -> dict:
    import ray

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="pipeline YAML (configs/demo.yaml, ...)")
    parser.add_argument("--model-dir", type=Path, default=None, help="defaults to the published model")
    parser.add_argument("--delta-only", action="store_true", help="only the corpus delta of new items")
    parser.add_argument(
        "--address", default=None, help="Ray address ('local' starts a private one); default: RAY_ADDRESS"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = load_config(args.config)
    if not ray.is_initialized():
        ray.init(address=args.address, log_to_driver=False, configure_logging=False)
    figures = run_inference(config, args.model_dir, args.delta_only)
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()

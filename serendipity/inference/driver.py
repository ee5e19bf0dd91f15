"""Batch inference, driver side: serendipitous_cluster(context_item) for the popular corpus, incrementally.

Hash the corpus items and plan against the manifest -> decode media (CPU tasks) -> predict (an
actor pool; one GPU per actor when configured) -> compact the committed part files into the output.
A small delta on CPUs runs both steps in the driver instead, without Ray Data's startup.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from serendipity.config import InferenceConfig, PipelineConfig, with_overrides
from serendipity.inference.corpus_items import content_hashes, load_corpus_items
from serendipity.inference.predict import (
    SUMMARY_PEAK_RSS,
    PredictBatch,
    decode_batch,
    decode_settings,
    peak_rss_mb,
    tally,
)
from serendipity.inference.store import InferenceStore
from serendipity.inference.summary import InferenceSummary, InferenceTally
from serendipity.layout import WorkLayout
from serendipity.logs import ProgressLog
from serendipity.schema import CONTENT_HASH_COLUMN

log = logging.getLogger("serendipity.infer")
PROGRESS_EVERY_S = 10.0  # at most a progress line per 10 s (and the last one)


def actor_gpus(settings: InferenceConfig, cluster_gpus: float) -> float:
    """GPUs each predictor actor requests: the configured number, else one when the cluster has GPUs."""
    if settings.num_gpus_per_actor is not None:
        return settings.num_gpus_per_actor
    return 1.0 if cluster_gpus > 0 else 0.0


def decode_tasks(settings: InferenceConfig, cluster_cpus: float, gpus_per_actor: float = 0.0) -> int:
    """Concurrent decode tasks: a CPU stage of its own, unless CPU actors leave it no CPU.

    With as many decode tasks as actors (and no GPUs) Ray Data fuses decoding into the actors, which
    is what we want when the actors take every CPU: a separate stage would wait forever for one.
    """
    if gpus_per_actor == 0 and settings.num_actors >= cluster_cpus:
        return settings.num_actors
    return settings.decode_concurrency


def _chunks(frame: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    return [frame.iloc[start : start + size].reset_index(drop=True) for start in range(0, len(frame), size)]


def _predictor_arguments(
    config: PipelineConfig, model_dir: Path, started: pd.Timestamp, weights: tuple[float, float]
) -> dict[str, Any]:
    return {
        "config": config.model_dump(mode="json"),
        "model_dir": str(model_dir),
        "started": started.isoformat(),
        "prior_weight": weights[0],
        "text_weight": weights[1],
    }


def _predict_all(
    config: PipelineConfig,
    todo: pd.DataFrame,
    model_dir: Path,
    started: pd.Timestamp,
    weights: tuple[float, float],
) -> InferenceTally:
    import ray
    from ray.data import ActorPoolStrategy, TaskPoolStrategy

    settings = config.inference
    resources = ray.cluster_resources()
    gpus = actor_gpus(settings, resources.get("GPU", 0.0))
    # The actors get the resolved count, so their predictors pick the device Ray gave them.
    actor_config = with_overrides(config, {"inference.num_gpus_per_actor": gpus})
    summaries = (
        ray.data.from_pandas(_chunks(todo, settings.batch_size))
        .map_batches(
            decode_batch,
            fn_kwargs=decode_settings(config),
            batch_format="pandas",
            batch_size=settings.batch_size,
            compute=TaskPoolStrategy(size=decode_tasks(settings, resources.get("CPU", 1.0), gpus)),
        )
        .map_batches(
            PredictBatch,
            fn_constructor_kwargs=_predictor_arguments(actor_config, model_dir, started, weights),
            batch_format="pandas",
            batch_size=settings.batch_size,
            compute=ActorPoolStrategy(
                size=settings.num_actors, max_tasks_in_flight_per_actor=settings.tasks_in_flight_per_actor
            ),
            num_gpus=gpus or None,
        )
    )
    totals = InferenceTally()
    progress = ProgressLog(log, "inferred", len(todo), "items", every_s=PROGRESS_EVERY_S)
    clock, first_batch, first_size = time.perf_counter(), None, 0
    for summary in summaries.iter_batches(batch_format="pandas", batch_size=None):
        if first_batch is None:
            first_batch, first_size = time.perf_counter(), len(summary)
        peak = float(summary[SUMMARY_PEAK_RSS].max())
        totals = totals.plus(InferenceTally(**tally(summary), actor_peak_rss_mb=peak))
        progress.update(totals.inferred)
    if first_batch is not None:
        # Startup (actors, model loads) until the first batch; throughput after it.
        after = time.perf_counter() - first_batch
        steady = (totals.inferred - first_size) / after if after > 0 else None
        totals = replace(
            totals,
            first_batch_seconds=round(first_batch - clock, 3),
            steady_items_per_s=round(steady, 3) if steady else None,
        )
    return totals


def _predict_in_process(
    config: PipelineConfig,
    todo: pd.DataFrame,
    model_dir: Path,
    started: pd.Timestamp,
    weights: tuple[float, float],
) -> InferenceTally:
    """A small delta in the driver: the same decode and predictor code, without actor startup (and
    without Ray: on a GPU machine the predictor runs on its GPU, see ``precision.inference_device``)."""
    predictor = PredictBatch(**_predictor_arguments(config, model_dir, started, weights))
    decoding = decode_settings(config)
    progress = ProgressLog(log, "inferred", len(todo), "items", every_s=PROGRESS_EVERY_S)
    summaries = []
    for chunk in _chunks(todo, config.inference.batch_size):
        summaries.append(predictor(decode_batch(chunk, **decoding)))
        progress.update(sum(len(summary) for summary in summaries))
    return InferenceTally(**tally(pd.concat(summaries, ignore_index=True)), in_process=True)


def _runs_in_process(settings: InferenceConfig, to_infer: int) -> bool:
    return to_infer < settings.in_process_below and not settings.num_gpus_per_actor


def run_inference(
    config: PipelineConfig, model_dir: Path | None = None, delta_only: bool = False
) -> InferenceSummary:
    """Infer every corpus item not yet done under the current model version; returns run figures.

    Serves what the last fine-tuning run chose (``finetune/summary.json``'s ``served``): the published
    model combined with the transition prior at its fitted weight, or a reference (the prior alone, the
    non-LLM guess) when the publish gate found it better. An explicit ``model_dir`` serves that model alone.

    Uses the Ray that is initialised (Ray Data starts a local one otherwise).
    """
    from serendipity.inference.without_model import reference_all
    from serendipity.mllm.gate import served_choice
    from serendipity.mllm.model import model_version, resolve_model_dir
    from serendipity.nomination.prior import load_prior

    clock = time.perf_counter()
    layout = WorkLayout.of(config)
    served = served_choice(layout.finetune_summary_path) if model_dir is None else None
    reference = served is not None and served.kind != "model"
    chosen_model = served is not None and served.kind == "model"
    weights = (served.prior_weight, served.text_weight) if served is not None and chosen_model else (0.0, 0.0)
    prior_weight = weights[0]
    if served is not None and served.kind == "model":
        model_dir = layout.models_dir / served.model_version
    model_dir = resolve_model_dir(model_dir or layout.models_dir)
    if reference:
        assert served is not None
        version = (
            served.model_version
            if served.kind == "non_llm_guess"
            else f"{served.model_version}+{load_prior(layout).info.version}"
        )
    else:
        version = model_version(model_dir)
        if prior_weight > 0:
            version = f"{version}+{load_prior(layout).info.version}"
    store = InferenceStore.of(layout)
    started = pd.Timestamp.now(tz="UTC")
    items, missing = load_corpus_items(layout, delta_only, version, started)
    store.write_part(pd.DataFrame(), missing)
    items = items.assign(**{CONTENT_HASH_COLUMN: content_hashes(items, config.dataset_dir).astype(str)})
    todo = store.plan(items, version)
    log.info("corpus %d items, %d to infer under model %s", len(items), len(todo), version)
    totals = InferenceTally()
    if len(todo) and reference:  # the publish gate found a reference better than every model
        assert served is not None
        totals = reference_all(config, todo, started, served.kind, version)
    elif len(todo) and _runs_in_process(config.inference, len(todo)):
        totals = _predict_in_process(config, todo, model_dir, started, weights)
    elif len(todo):
        totals = _predict_all(config, todo, model_dir, started, weights)
    output_rows, error_rows = store.compact()
    return InferenceSummary(
        corpus_items=len(items) + len(missing),
        to_infer=len(todo),
        tally=totals,
        output_rows=output_rows,
        error_rows=error_rows,
        model_version=version,
        seconds=round(time.perf_counter() - clock, 3),
        driver_peak_rss_mb=peak_rss_mb(),
    )

"""The two per-batch steps of batch inference: decode media (CPU tasks), then predict (the actor).

Both work on pandas batches, so Ray Data maps them over the corpus and the driver can call them
directly on a small delta. The actor commits every finished batch as its own part file and returns
only a summary: predictions never travel back through the object store.
"""

from __future__ import annotations

import resource
from typing import Any

import pandas as pd

from serendipity.config import PipelineConfig
from serendipity.inference.store import InferenceStore, append_audit, error_rows, prediction_rows
from serendipity.layout import WorkLayout
from serendipity.schema import CONTENT_HASH_COLUMN, ITEM_JOIN_KEY, MEDIA_FALLBACK_COLUMN

MEDIA = "media"  # decoded ItemMedia, between the decode and predict steps
# Prompt tokens the start-up memory check assumes: a real VLM's frames take up to about 2k tokens.
PROMPT_TOKENS_BUDGET = 2048
SUMMARY_OK = "ok"
SUMMARY_PEAK_RSS = "actor_peak_rss_mb"


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def decode_batch(batch: pd.DataFrame, dataset_dir: str, style: str, frames: int, size: int) -> pd.DataFrame:
    """Items-table rows (with content_hash) -> (item_id, content_hash, media) for the predictor."""
    from serendipity.mllm.prompts import item_media_from_row

    media = [item_media_from_row(row, dataset_dir, style, frames, size) for row in batch.to_dict("records")]
    return pd.DataFrame(
        {ITEM_JOIN_KEY: batch[ITEM_JOIN_KEY], CONTENT_HASH_COLUMN: batch[CONTENT_HASH_COLUMN], MEDIA: media}
    )


def decode_settings(config: PipelineConfig) -> dict[str, Any]:
    """The keyword arguments of ``decode_batch`` besides the batch: dataset and prompt settings."""
    mllm = config.mllm
    return {
        "dataset_dir": str(config.dataset_dir),
        "style": mllm.prompt_style,
        "frames": mllm.num_frames,
        "size": mllm.image_size,
    }


def check_gpu_memory(predictor: Any) -> None:
    """On a GPU, fail at start-up when a batch of prompts and its beams cannot fit (``precision.py``)."""
    from serendipity.mllm.precision import check_inference_memory

    parameter = next(predictor.model.parameters())
    if parameter.device.type != "cuda":
        return
    check_inference_memory(
        predictor.model,
        batch_size=predictor.batch_size,
        num_beams=predictor.num_beams,
        sequence_length=PROMPT_TOKENS_BUDGET + predictor.max_new_tokens,
        device=parameter.device,
        precision={"torch.bfloat16": "bf16", "torch.float16": "fp16"}.get(str(parameter.dtype), "fp32"),
    )


class PredictBatch:
    """Actor: loads the model once, predicts a batch, commits it as a part file, returns a summary.

    A failing item never sinks its batch: it is retried alone and recorded in the errors table.
    """

    def __init__(
        self,
        config: dict[str, Any],
        model_dir: str,
        started: str,
        prior_weight: float = 0.0,
        text_weight: float = 0.0,
    ) -> None:
        from serendipity.mllm.predictor import predictor_from_config

        self.config = PipelineConfig.model_validate(config)
        self.predictor = predictor_from_config(self.config, model_dir, prior_weight, text_weight)
        check_gpu_memory(self.predictor)
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

        media = list(batch[MEDIA])
        with torch.inference_mode():
            try:
                predictions, errors = self.predictor.predict(media), [None] * len(media)
            except Exception:  # noqa: BLE001 - retry one by one to isolate the failing items
                predictions, errors = self._predict_each(media)
        version = self.predictor.model_version
        if self.config.inference.audit_log:
            append_audit(self.config.inference.audit_log, batch[ITEM_JOIN_KEY].tolist(), version)
        failed = pd.Series([e is not None for e in errors], index=batch.index)
        ok = batch[~failed]
        rows, unmapped = prediction_rows(
            ok[ITEM_JOIN_KEY].tolist(),
            ok[CONTENT_HASH_COLUMN].tolist(),
            [p for p, bad in zip(predictions, failed, strict=True) if not bad],
            [m.media_fallback for m, bad in zip(media, failed, strict=True) if not bad],
            version,
            self.config.mllm.prompt_style,
            self.started,
        )
        crashed = error_rows(
            batch.loc[failed, ITEM_JOIN_KEY],
            batch.loc[failed, CONTENT_HASH_COLUMN],
            version,
            [e for e in errors if e is not None],
            self.started,
        )
        self.store.write_part(rows, pd.concat([unmapped, crashed], ignore_index=True))
        return pd.DataFrame(
            {
                ITEM_JOIN_KEY: batch[ITEM_JOIN_KEY],
                SUMMARY_OK: batch[ITEM_JOIN_KEY].isin(rows[ITEM_JOIN_KEY]),
                MEDIA_FALLBACK_COLUMN: [m.media_fallback for m in media],
                SUMMARY_PEAK_RSS: peak_rss_mb(),
            }
        )


def tally(summary: pd.DataFrame) -> dict[str, int]:
    """Items inferred, answered with a cluster, and decoded with the text fallback in ``summary``."""
    return {
        "inferred": len(summary),
        "inferred_ok": int(summary[SUMMARY_OK].sum()),
        "media_fallback": int(summary[MEDIA_FALLBACK_COLUMN].sum()),
    }

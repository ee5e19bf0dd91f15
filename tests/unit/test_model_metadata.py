"""serendipity_model.json as a typed result: the same text and version digest as the untyped dict had."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from serendipity.mllm.model import MODEL_METADATA_FILE, ModelMetadata, model_metadata

PUBLISHED = {
    "base_model_dir": "/work/models/base",
    "steps": 40,
    "prompt_style": "cot",
    "num_frames": 4,
    "level": 3,
    "lora": False,
    "final_metrics": {"step": 40, "loss": 0.5, "match_rate": 0.9, "recall": None},
    "checkpoint": "/work/finetune/run/checkpoint_000040",
    "prior_weight": 0.25,
    "text_weight": 0.0,
    "prior_snapshot": "0123456789",
}
TINY = {"architecture": "gemma3", "dataset_dir": "/data/world", "image_size": 32, "tiny_random": True}


def _old_text(metadata: dict) -> str:
    return json.dumps(metadata, indent=2, default=str)


def _old_digest(metadata: dict) -> str:
    return hashlib.sha1(json.dumps(metadata, sort_keys=True, default=str).encode()).hexdigest()[:8]


def test_published_and_tiny_metadata_keep_their_text_and_digest(tmp_path: Path) -> None:
    for document in (PUBLISHED, TINY, {"steps": 0}):
        metadata = ModelMetadata.model_validate(document)
        assert metadata.text() == _old_text(document)
        assert metadata.digest() == _old_digest(document)
        (tmp_path / MODEL_METADATA_FILE).write_text(metadata.text())
        assert model_metadata(tmp_path) == metadata
        assert model_metadata(tmp_path).to_json() == document


def test_metadata_is_read_by_attribute_and_empty_when_absent(tmp_path: Path) -> None:
    assert model_metadata(tmp_path).to_json() == {} and not model_metadata(tmp_path).tiny_random
    (tmp_path / MODEL_METADATA_FILE).write_text(json.dumps({**TINY, "added_later": 1}))
    recorded = model_metadata(tmp_path)
    assert recorded.tiny_random and recorded.prior_weight is None
    assert recorded.to_json() == {**TINY, "added_later": 1}

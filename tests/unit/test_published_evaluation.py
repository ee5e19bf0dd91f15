"""finetune/evaluation.json as a typed result: written as the untyped dict was, read back unchanged."""

from __future__ import annotations

from pathlib import Path

from serendipity.io import write_json_atomic
from serendipity.mllm.evaluation import DecodingScores, PublishedEvaluation
from serendipity.mllm.metrics import score_predictions


def test_an_old_evaluation_reads_and_writes_back_byte_identical(tmp_path: Path) -> None:
    scores = {"items": 10, "match_rate": 0.9, "recall": 0.3, "recall_at_k": 0.5, "k": 3}
    document = {
        "model_version": "mllm-20260101T000000-ab12cd34",
        "prompt_style": "cot",
        "media_fallbacks": 0,
        "free": scores,
        "constrained_to_siblings": {**scores, "match_rate": 1.0, "recall": 0.4},
        "non_llm_baseline": {"items": 10, "hits": 2, "recall": 0.2, "pairs_source": "aggregates"},
    }
    old = write_json_atomic(document, tmp_path / "old.json")
    evaluation = PublishedEvaluation.read(old)
    served, guess = evaluation.constrained_to_siblings, evaluation.non_llm_baseline
    assert served is not None and served.recall == 0.4
    assert guess is not None and guess.pairs_source == "aggregates"
    assert evaluation.write(tmp_path / "new.json").read_bytes() == old.read_bytes()
    assert PublishedEvaluation.model_validate({"model_version": "v", "later": 1}).to_json() == {
        "model_version": "v",
        "later": 1,
    }


def test_decoding_scores_keep_the_eval_result_keys() -> None:
    result = score_predictions([], [], {}, 3)
    assert DecodingScores.of(result).to_json() == result.as_dict()

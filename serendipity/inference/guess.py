"""Inference without a published model: the non-LLM guess as the feature, under ``non-llm-guess``.

When the publish gate held back every fine-tuned model, the chain still serves: each corpus item gets
the sibling of its level-L cluster with the highest mean satisfaction in the training pairs.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from serendipity.config import PipelineConfig
from serendipity.inference.predict import SUMMARY_PEAK_RSS
from serendipity.inference.store import InferenceStore, prediction_rows
from serendipity.layout import WorkLayout
from serendipity.mllm.gate import NON_LLM_GUESS_VERSION
from serendipity.schema import CONTENT_HASH_COLUMN, ITEM_JOIN_KEY, level_column


def guess_all(config: PipelineConfig, todo: pd.DataFrame, started: pd.Timestamp) -> dict[str, Any]:
    """Write the guess for every row of ``todo`` (items-table rows with content_hash); returns the tally."""
    from serendipity.mllm.data import load_tree
    from serendipity.mllm.generation import Prediction
    from serendipity.mllm.guess import GUESS_REASONING, best_sibling_guess

    layout = WorkLayout.of(config)
    guess, _ = best_sibling_guess(config)
    tree = load_tree(layout)
    own = todo[level_column(config.mining.level)].astype("int64")
    answers = [guess.get(int(cluster)) for cluster in own]
    predictions = [
        [Prediction(answer, tree.description(answer), 0.0, GUESS_REASONING)] if answer is not None else []
        for answer in answers
    ]
    rows, unmapped = prediction_rows(
        todo[ITEM_JOIN_KEY].tolist(),
        todo[CONTENT_HASH_COLUMN].tolist(),
        predictions,
        [False] * len(todo),
        NON_LLM_GUESS_VERSION,
        config.mllm.prompt_style,
        started,
    )
    InferenceStore.of(layout).write_part(rows, unmapped)
    return {"inferred": len(todo), "inferred_ok": len(rows), "media_fallback": 0, SUMMARY_PEAK_RSS: 0.0}

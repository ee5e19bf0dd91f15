"""Inference without a model: a reference nominator as the feature, when the publish gate chose one.

``transition_prior``: each corpus item gets the sibling its logged transitions (its own when it is
warm, else its cluster's) favour; ``non_llm_guess``: the sibling of its level-L cluster with the highest
mean satisfaction in the training pairs.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from serendipity.config import PipelineConfig
from serendipity.inference.store import InferenceStore, prediction_rows
from serendipity.inference.summary import InferenceTally
from serendipity.layout import WorkLayout
from serendipity.schema import CONTENT_HASH_COLUMN, ITEM_JOIN_KEY, LEVEL_COLUMNS, level_column


def _guess_predictions(config: PipelineConfig, own: pd.Series) -> list[list[Any]]:
    from serendipity.mllm.data import load_tree
    from serendipity.mllm.generation import Prediction
    from serendipity.mllm.satisfaction_guess import GUESS_REASONING, best_sibling_guess

    tree = load_tree(WorkLayout.of(config))
    guess, _ = best_sibling_guess(config)
    answers = [guess.get(int(cluster)) for cluster in own]
    return [
        [Prediction(answer, tree.description(answer), 0.0, GUESS_REASONING)] if answer is not None else []
        for answer in answers
    ]


def _prior_predictions(config: PipelineConfig, todo: pd.DataFrame) -> list[list[Any]]:
    from dataclasses import replace

    from serendipity.mllm.data import load_tree
    from serendipity.mllm.nominator import nominate_items, predictions_of
    from serendipity.mllm.prompts import ItemMedia
    from serendipity.mllm.satisfaction_guess import PRIOR_REASONING
    from serendipity.nomination.combine import PRIOR_ALONE
    from serendipity.nomination.prior import load_prior

    layout, level = WorkLayout.of(config), config.mining.level
    tree, prior = load_tree(layout), load_prior(layout)
    items = [
        ItemMedia(
            item_id=int(row[ITEM_JOIN_KEY]), title="", cluster_path=tuple(int(row[c]) for c in LEVEL_COLUMNS)
        )
        for _, row in todo.iterrows()
    ]
    nominations = nominate_items(items, level, tree, prior, PRIOR_ALONE, None)
    return [
        predictions_of(replace(n, reasoning=PRIOR_REASONING), tree, config.inference.top_k)
        for n in nominations
    ]


def reference_all(
    config: PipelineConfig, todo: pd.DataFrame, started: pd.Timestamp, kind: str, version: str
) -> InferenceTally:
    """Write the reference's nomination for every row of ``todo`` (items-table rows with content_hash)."""
    own = todo[level_column(config.mining.level)].astype("int64")
    item_ids = todo[ITEM_JOIN_KEY].astype("int64").tolist()
    if kind == "transition_prior":
        predictions = _prior_predictions(config, todo)
    else:
        predictions = _guess_predictions(config, own)
    rows, unmapped = prediction_rows(
        item_ids,
        todo[CONTENT_HASH_COLUMN].tolist(),
        predictions,
        [False] * len(todo),
        version,
        config.mllm.prompt_style,
        started,
    )
    InferenceStore.of(WorkLayout.of(config)).write_part(rows, unmapped)
    return InferenceTally(inferred=len(todo), inferred_ok=len(rows))

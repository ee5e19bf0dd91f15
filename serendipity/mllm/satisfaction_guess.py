"""The best non-LLM guess: for an item in level-L cluster c, the sibling of c with the highest mean
satisfaction in the training-period pairs (``best_sibling_by_satisfaction``). A reference of the publish
gate, and what inference serves when the gate finds it the best."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq

from serendipity.config import PipelineConfig
from serendipity.layout import WorkLayout
from serendipity.mllm.data import load_tree
from serendipity.mllm.metrics import best_sibling_by_satisfaction
from serendipity.nomination.prior import PriorInfo, epoch_micros

GUESS_REASONING = (
    "non-LLM guess: the sibling cluster with the highest mean satisfaction in the training pairs"
)
PRIOR_REASONING = (
    "transition prior: where viewers of this video (or its cluster) went next, weighted by satisfaction"
)


def training_pairs(layout: WorkLayout) -> pd.DataFrame:
    """(context_item_id, context_cluster, next_cluster, satisfaction) of the training-period pairs."""
    cuts = PriorInfo.read(layout.prior_info_path).cuts
    columns = ["context_item_id", "context_cluster", "next_cluster", "satisfaction", "ts"]
    pairs = pq.read_table(layout.pairs_path, columns=columns).to_pandas()
    micros = epoch_micros(pairs["ts"])
    return pairs[micros < cuts.train_end_micros].drop(columns="ts")


def best_sibling_guess(config: PipelineConfig) -> tuple[dict[int, int], str]:
    """The guess per level-L cluster, and the path of the pairs it was learnt from."""
    layout = WorkLayout.of(config)
    guess = best_sibling_by_satisfaction(training_pairs(layout), load_tree(layout), config.mining.level)
    return guess, str(layout.pairs_path)


def best_sibling_guess_recall(config: PipelineConfig) -> dict[str, float | int | str]:
    """Hits and recall of the best non-LLM guess on the validation items."""
    from serendipity.mllm.data import load_items, load_sft
    from serendipity.schema import SPLIT_VALIDATION, level_column

    layout = WorkLayout.of(config)
    guess, source = best_sibling_guess(config)
    sft = load_sft(layout)
    validation = sft[sft["split"] == SPLIT_VALIDATION]
    items = load_items(layout, validation["context_item_id"].unique().tolist())
    own = items[level_column(config.mining.level)].astype("int64")
    labels = (
        validation[validation["context_item_id"].isin(own.index)]
        .groupby("context_item_id")["target_cluster"]
        .agg(set)
    )
    hits = sum(guess.get(int(own.loc[item])) in targets for item, targets in labels.items())
    return {
        "items": len(labels),
        "hits": int(hits),
        "recall": hits / len(labels) if len(labels) else 0.0,
        "pairs_source": source,
    }

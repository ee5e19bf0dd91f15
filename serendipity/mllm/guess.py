"""The best non-LLM guess: for an item in level-L cluster c, the sibling of c with the highest mean
satisfaction in the training pairs (``best_sibling_by_satisfaction``). It is the publish gate's floor and
what inference serves while no fine-tuned model passed the gate."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq

from serendipity.config import PipelineConfig
from serendipity.layout import WorkLayout
from serendipity.mllm.data import load_items, load_sft, load_tree
from serendipity.mllm.metrics import best_sibling_by_satisfaction
from serendipity.schema import SPLIT_TRAIN, SPLIT_VALIDATION, level_column

GUESS_REASONING = (
    "non-LLM guess: the sibling cluster with the highest mean satisfaction in the training pairs"
)


def _training_pairs(
    layout: WorkLayout, sft: pd.DataFrame, own_cluster: pd.Series
) -> tuple[pd.DataFrame, str]:
    """(context_cluster, next_cluster, satisfaction) of the training items, and where they came from."""
    train_ids = set(sft.loc[sft["split"] == SPLIT_TRAIN, "context_item_id"])
    if layout.pairs_path.exists():
        columns = ["context_item_id", "context_cluster", "next_cluster", "satisfaction"]
        pairs = pq.read_table(layout.pairs_path, columns=columns).to_pandas()
        return pairs[pairs["context_item_id"].isin(train_ids)], str(layout.pairs_path)
    train = sft[(sft["split"] == SPLIT_TRAIN) & sft["context_item_id"].isin(own_cluster.index)]
    pairs = pd.DataFrame(
        {
            "context_cluster": own_cluster.loc[train["context_item_id"]].to_numpy(),
            "next_cluster": train["target_cluster"].to_numpy(),
            "satisfaction": train["score"].to_numpy(),
        }
    )
    return pairs, str(layout.sft_path)


def _curated_items(config: PipelineConfig) -> tuple[pd.DataFrame, pd.Series]:
    """The curated set and the level-L cluster of each of its context items."""
    layout = WorkLayout.of(config)
    sft = load_sft(layout)
    items = load_items(layout, sft["context_item_id"].unique().tolist())
    return sft, items[level_column(config.mining.level)].astype("int64")


def _guess_from(
    config: PipelineConfig, sft: pd.DataFrame, own_cluster: pd.Series
) -> tuple[dict[int, int], str]:
    layout = WorkLayout.of(config)
    pairs, source = _training_pairs(layout, sft, own_cluster)
    return best_sibling_by_satisfaction(pairs, load_tree(layout), config.mining.level), source


def best_sibling_guess(config: PipelineConfig) -> tuple[dict[int, int], str]:
    """The guess per level-L cluster, and the path of the pairs it was learnt from."""
    return _guess_from(config, *_curated_items(config))


def best_sibling_guess_recall(config: PipelineConfig) -> dict[str, float | int | str]:
    """Hits and recall of the best non-LLM guess on the validation items."""
    sft, own_cluster = _curated_items(config)
    guess, source = _guess_from(config, sft, own_cluster)
    validation = sft[(sft["split"] == SPLIT_VALIDATION) & sft["context_item_id"].isin(own_cluster.index)]
    labels = validation.groupby("context_item_id")["target_cluster"].agg(set)
    hits = sum(guess.get(int(own_cluster.loc[item])) in targets for item, targets in labels.items())
    return {
        "items": len(labels),
        "hits": int(hits),
        "recall": hits / len(labels) if len(labels) else 0.0,
        "pairs_source": source,
    }

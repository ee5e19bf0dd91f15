"""Fine-tuning data: the curated set + items + tree -> prompt/target examples -> padded tensor batches.

Besides the curated (context item -> serendipitous cluster) examples, every cluster description gets
a short recitation example, so the model learns to generate each description verbatim (the paper's
controlled generation). Labels mask the prompt: the loss is on the target tokens only, for every
family (PaliGemma also marks the target with ``token_type_ids`` = 1, as its processor does a suffix).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from serendipity.config import PipelineConfig
from serendipity.io import parquet_schema
from serendipity.layout import WorkLayout
from serendipity.mllm.model import answer_token_type
from serendipity.mllm.prompts import (
    ItemMedia,
    Prompt,
    PromptStyle,
    build_prompt,
    description_prompt,
    item_media_from_row,
    target_text,
)
from serendipity.schema import ITEMS_FILE, LEVEL_COLUMNS, SFT_SCHEMA, SPLIT_TRAIN, SPLIT_VALIDATION, SPLITS
from serendipity.tree import ClusterTree

IGNORE_INDEX = -100
# Per-token inputs a processor may return; everything else (pixel values, grids) is per image.
SEQUENCE_KEYS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids")


@dataclass(frozen=True)
class SftExample:
    prompt: Prompt
    target: str
    context_item_id: int | None = None  # None for description recitations
    target_cluster: int | None = None


@dataclass
class FinetuneData:
    """What a fine-tuning worker needs: training examples and the held-out context items."""

    tree: ClusterTree
    train: list[SftExample]
    validation_items: list[ItemMedia]
    validation_labels: dict[int, set[int]]
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    media_fallbacks: int = 0


def load_tree(layout: WorkLayout) -> ClusterTree:
    """The tree with every cluster description: the curated descriptions, else the catalogue's clusters."""
    return ClusterTree.load(layout.described_tree_source())


def load_sft(layout: WorkLayout) -> pd.DataFrame:
    path = layout.sft_path
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run the curate job before fine-tuning")
    missing = [name for name in SFT_SCHEMA.names if name not in parquet_schema(path).names]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {SFT_SCHEMA.names}")
    frame = pq.read_table(path, columns=SFT_SCHEMA.names).to_pandas()
    bad = frame[~frame["split"].isin(SPLITS)]
    if len(bad):
        raise ValueError(
            f"{path}: column 'split' must be one of {list(SPLITS)}; "
            f"rows {bad.index[:10].tolist()} hold {sorted(bad['split'].astype(str).unique())[:5]}"
        )
    return frame


def load_items(layout: WorkLayout, item_ids: Sequence[int]) -> pd.DataFrame:
    path = layout.catalog_dir() / ITEMS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run the validate (or tree) job before fine-tuning")
    wanted = ("item_id", "title", "thumbnail_path", "video_path", *LEVEL_COLUMNS)
    present = [c for c in wanted if c in parquet_schema(path).names]
    frame = pq.read_table(path, columns=present).to_pandas()
    return frame[frame["item_id"].isin(set(item_ids))].set_index("item_id", drop=False)


def decode_items(
    items: pd.DataFrame, config: PipelineConfig, style: PromptStyle | None = None
) -> dict[int, ItemMedia]:
    style = PromptStyle(style or config.mllm.prompt_style)
    return {
        int(item_id): item_media_from_row(
            row.to_dict(), config.dataset_dir, style, config.mllm.num_frames, config.mllm.image_size
        )
        for item_id, row in items.iterrows()
    }


def description_examples(tree: ClusterTree, processor: Any) -> list[SftExample]:
    examples = []
    for description in tree.descriptions():
        text, target = description_prompt(description, processor)
        examples.append(SftExample(Prompt(text, [], PromptStyle.TEXT, False), target))
    return examples


def _problem(tree: ClusterTree, media: ItemMedia | None, target: int, level: int) -> str | None:
    if media is None:
        return "context item not in the items table"
    if target not in tree:
        return f"target cluster {target} not in the tree"
    if tree.level(target) != level:
        return f"target cluster {target} is at level {tree.level(target)}, not {level}"
    own = media.cluster_at(level)
    if own not in tree:
        return f"the item's own level-{level} cluster {own} is not in the tree"
    if own == target or tree.parent(own) != tree.parent(target):
        return f"target cluster {target} is not a sibling of the item's cluster {own}"
    return None


def build_finetune_data(config: PipelineConfig, processor: Any) -> FinetuneData:
    """Examples for training (curated train split + recitations) and validation items with their labels."""
    layout = WorkLayout.of(config)
    style = PromptStyle(config.mllm.prompt_style)
    sft = load_sft(layout)
    validation = sft[sft["split"] == SPLIT_VALIDATION]
    curve_items = sorted(validation["context_item_id"].unique().tolist())[: config.mllm.curve_items]
    sft = sft[(sft["split"] == SPLIT_TRAIN) | sft["context_item_id"].isin(curve_items)]
    media = decode_items(load_items(layout, sft["context_item_id"].unique().tolist()), config, style)
    return finetune_examples(load_tree(layout), sft, media, config.mining.level, style, processor)


def finetune_examples(
    tree: ClusterTree,
    sft: pd.DataFrame,
    media: Mapping[int, ItemMedia],
    level: int,
    style: PromptStyle | str,
    processor: Any,
) -> FinetuneData:
    """The curated rows (with their decoded context items) as examples; unusable rows are quarantined."""
    style = PromptStyle(style)
    data = FinetuneData(tree, [], [], {})
    for row in sft.itertuples(index=False):
        item, target = media.get(int(row.context_item_id)), int(row.target_cluster)
        reason = _problem(tree, item, target, level)
        if reason is not None:
            data.quarantined.append({**row._asdict(), "_reason": reason})
            continue
        assert item is not None
        if row.split != SPLIT_TRAIN:
            if row.split != SPLIT_VALIDATION:
                continue  # calibration items fit the nominator after training, never the curves
            if item.item_id not in data.validation_labels:
                data.validation_items.append(item)
            data.validation_labels.setdefault(item.item_id, set()).add(target)
            continue
        prompt = build_prompt(item, style, tree, level, processor)
        own = item.cluster_at(level)
        data.train.append(
            SftExample(prompt, target_text(prompt.style, tree, own, target), item.item_id, target)
        )
    data.media_fallbacks = sum(m.media_fallback for m in media.values())
    data.train.extend(description_examples(tree, processor))
    return data


def _text_only_prefix(processor: Any, text: str) -> dict[str, Any]:
    """A text-only prompt laid out as PaliGemma's processor lays out a prefix (BOS, text, newline); its
    processor refuses calls without images."""
    import torch

    tokenizer = processor.tokenizer
    ids = tokenizer(f"{tokenizer.bos_token}{text}\n", add_special_tokens=False, return_tensors="pt")
    input_ids = ids["input_ids"]
    zeros = torch.zeros_like(input_ids)
    return {"input_ids": input_ids, "attention_mask": zeros + 1, "token_type_ids": zeros}


def prompt_inputs(processor: Any, prompt: Prompt) -> dict[str, Any]:
    """What the processor makes of a prompt: tokens, and the images' or the video's pixel values."""
    import numpy as np

    kwargs: dict[str, Any] = {"text": prompt.text, "return_tensors": "pt"}
    if prompt.as_video:
        kwargs["videos"] = [np.stack(prompt.images)]
    elif prompt.images:
        kwargs["images"] = prompt.images
    elif answer_token_type(processor):
        return _text_only_prefix(processor, prompt.text)
    encoded = dict(processor(**kwargs))
    encoded.pop("labels", None)  # PaliGemma labels every call; ours come from the target below
    return encoded


def encode(processor: Any, prompt: Prompt, target: str | None = None) -> dict[str, Any]:
    """Processor inputs for one prompt; with a target, the target tokens + EOS follow, labelled."""
    import torch

    encoded = prompt_inputs(processor, prompt)
    if target is None:
        return encoded
    tokenizer = processor.tokenizer
    prompt_length = encoded["input_ids"].shape[1]
    target_ids = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    extra = torch.tensor([target_ids], dtype=encoded["input_ids"].dtype)
    fills = {"input_ids": extra, "attention_mask": 1, "token_type_ids": answer_token_type(processor)}
    for key in SEQUENCE_KEYS:
        if key in encoded:
            fill = fills.get(key, 0)
            filler = fill if isinstance(fill, torch.Tensor) else torch.full_like(extra, fill)
            encoded[key] = torch.cat([encoded[key], filler.to(encoded[key].dtype)], dim=1)
    encoded["labels"] = torch.cat([torch.full((1, prompt_length), IGNORE_INDEX), extra], dim=1)
    return encoded


def _stack_media(tensors: Sequence[Any]) -> Any:
    """Concatenate per-image tensors along dim 0, zero-padding the other dims to the largest (Idefics3
    pads missing images, LLaVA-OneVision missing tiles, with zeros that the model drops)."""
    import torch
    import torch.nn.functional as F

    shape = [max(t.shape[d] for t in tensors) for d in range(1, tensors[0].dim())]
    padded = []
    for tensor in tensors:
        pads = [p for d in reversed(range(1, tensor.dim())) for p in (0, shape[d - 1] - tensor.shape[d])]
        padded.append(F.pad(tensor, pads) if any(pads) else tensor)
    return torch.cat(padded, dim=0)


def collate(
    encoded: Sequence[dict[str, Any]], pad_token_id: int, padding_side: str = "right"
) -> dict[str, Any]:
    """Pad per-token tensors to the longest example; concatenate per-image tensors along dim 0."""
    import torch

    longest = max(e["input_ids"].shape[1] for e in encoded)
    batch: dict[str, Any] = {}
    keys = {key for e in encoded for key in e}
    for key in sorted(keys):
        present = [e[key] for e in encoded if key in e]
        if key in SEQUENCE_KEYS or key == "labels":
            pad = {"input_ids": pad_token_id, "labels": IGNORE_INDEX}.get(key, 0)
            rows = []
            for tensor in present:
                filler = torch.full((1, longest - tensor.shape[1]), pad, dtype=tensor.dtype)
                parts = [tensor, filler] if padding_side == "right" else [filler, tensor]
                rows.append(torch.cat(parts, dim=1))
            batch[key] = torch.cat(rows, dim=0)
        else:
            batch[key] = _stack_media(present)
    return batch


def training_batch(processor: Any, examples: Sequence[SftExample]) -> dict[str, Any]:
    encoded = [encode(processor, e.prompt, e.target) for e in examples]
    return collate(encoded, processor.tokenizer.pad_token_id, "right")


def generation_batch(processor: Any, prompts: Sequence[Prompt]) -> dict[str, Any]:
    """Left-padded prompts, ready for ``model.generate``."""
    encoded = [encode(processor, p) for p in prompts]
    return collate(encoded, processor.tokenizer.pad_token_id, "left")


def write_quarantine(rows: list[dict[str, Any]], path: Path) -> Path | None:
    from serendipity.io import write_parquet_atomic

    if not rows:
        return None
    import pyarrow as pa

    return write_parquet_atomic(pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False), path)


def load_validation(config: PipelineConfig) -> tuple[ClusterTree, list[ItemMedia], dict[int, set[int]]]:
    """The validation context items (decoded for the configured style) and their label clusters."""
    return load_holdout(config, SPLIT_VALIDATION)


def load_holdout(
    config: PipelineConfig, split: str
) -> tuple[ClusterTree, list[ItemMedia], dict[int, set[int]]]:
    """The context items of a held-out split (decoded for the configured style) and their labels."""
    layout = WorkLayout.of(config)
    tree, sft = load_tree(layout), load_sft(layout)
    validation = sft[sft["split"] == split]
    media = decode_items(load_items(layout, validation["context_item_id"].unique().tolist()), config)
    labels: dict[int, set[int]] = {}
    for row in validation.itertuples(index=False):
        if int(row.context_item_id) in media:
            labels.setdefault(int(row.context_item_id), set()).add(int(row.target_cluster))
    return tree, [media[item_id] for item_id in labels], labels

"""The tiny default VLM and ``load_model``: build, save, reload, a second architecture, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from serendipity.mllm.data import generation_batch
from serendipity.mllm.model import (
    MllmLoadError,
    ModelMetadata,
    load_model,
    model_version,
    publish_model,
    resolve_model_dir,
)
from serendipity.mllm.prompts import ItemMedia, PromptStyle, build_prompt
from serendipity.mllm.tiny import TinySize, build_tiny_model, dataset_texts, init_tiny_model
from serendipity.tree import ClusterTree


@pytest.fixture(scope="module")
def tiny_dirs(world_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("tiny_models")
    return {
        arch: init_tiny_model(base / arch, world_dataset, architecture=arch) for arch in ("llava", "gemma3")
    }


def _video_item(tree: ClusterTree, frames: int) -> ItemMedia:
    leaf = tree.leaves()[0]
    images = [np.full((32, 32, 3), 40 * i, dtype=np.uint8) for i in range(frames)]
    return ItemMedia(item_id=1, title="a title", cluster_path=tuple(tree.path(leaf)), images=images)


@pytest.mark.parametrize("architecture", ["llava", "gemma3"])
def test_tiny_model_reloads_and_generates(
    architecture: str, tiny_dirs: dict[str, Path], world_dataset: Path
) -> None:
    model, processor = load_model(tiny_dirs[architecture])
    tree = ClusterTree.load(world_dataset)
    description = tree.description(tree.leaves()[0])
    tokenizer = processor.tokenizer
    assert tokenizer.decode(tokenizer(description, add_special_tokens=False)["input_ids"]) == description
    assert sum(p.numel() for p in model.parameters()) < 5_000_000

    prompt = build_prompt(_video_item(tree, 2), PromptStyle.VIDEO_COT, tree, 3, processor)
    inputs = generation_batch(processor, [prompt, prompt])
    assert inputs["pixel_values"].shape[0] == 4  # two prompts x two frames
    output = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert output.shape == (2, inputs["input_ids"].shape[1] + 3)


def test_architectures_differ(tiny_dirs: dict[str, Path]) -> None:
    names = {type(load_model(path)[0]).__name__ for path in tiny_dirs.values()}
    assert names == {"LlavaForConditionalGeneration", "Gemma3ForConditionalGeneration"}


def test_tokenizer_learns_dataset_words(world_dataset: Path, tiny_dirs: dict[str, Path]) -> None:
    _, processor = load_model(tiny_dirs["llava"])
    texts = dataset_texts(world_dataset)
    words = sum(len(t.split()) for t in texts[:200])
    tokens = sum(len(processor.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts[:200])
    assert tokens < 2 * words  # trained merges: far fewer tokens than bytes


def test_missing_directory_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(MllmLoadError, match=str(tmp_path / "nope")):
        load_model(tmp_path / "nope")


def test_incomplete_directory_names_what_is_missing(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((tiny_dirs["llava"] / "config.json").read_text())
    with pytest.raises(MllmLoadError, match="missing model weights.*processor"):
        load_model(broken)


def test_text_only_model_is_rejected(world_dataset: Path, tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from serendipity.mllm.tiny import train_tokenizer

    tokenizer = train_tokenizer(
        dataset_texts(world_dataset), {"pad": "<p>", "bos": "<s>", "eos": "</s>", "unk": "?"}
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text("{}")
    with pytest.raises(MllmLoadError, match="not an image-text-to-text model"):
        load_model(tmp_path)


def test_published_model_resolves_through_latest(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    model, processor = load_model(tiny_dirs["gemma3"])
    version = publish_model(model, processor, tmp_path, ModelMetadata(steps=0))
    assert resolve_model_dir(tmp_path) == version
    assert model_version(tmp_path) == version.name
    reloaded, _ = load_model(tmp_path)
    assert type(reloaded) is type(model)


def test_metrics_and_non_llm_guess(world_dataset: Path) -> None:
    import pandas as pd

    from serendipity.mllm.generation import Prediction
    from serendipity.mllm.metrics import best_sibling_by_satisfaction, non_llm_recall, score_predictions

    tree = ClusterTree.load(world_dataset)
    own = tree.at_level(3)[0]
    sibling = tree.siblings(own)[0]
    pairs = pd.DataFrame(
        {"context_cluster": [own, own], "next_cluster": [sibling, sibling], "satisfaction": [0.9, 0.7]}
    )
    guess = best_sibling_by_satisfaction(pairs, tree, 3)
    assert guess[own] == sibling and set(guess) == set(tree.at_level(3))
    item = _video_item(tree, 0)
    labels = {item.item_id: {sibling}}
    assert non_llm_recall(guess, [item], labels, 3) == float(item.cluster_at(3) == own)

    hit = Prediction(sibling, tree.description(sibling), -0.1, "")
    miss = Prediction(own, tree.description(own), -0.2, "")
    free_text = Prediction(None, "not a cluster", -0.3, "")
    result = score_predictions([[miss, hit], [free_text]], [1, 2], {1: {sibling}, 2: {sibling}}, k=2)
    assert (result.match_rate, result.recall, result.recall_at_k) == (0.5, 0.0, 0.5)


def test_vision_tower_size_is_configurable(world_dataset: Path) -> None:
    texts = dataset_texts(world_dataset)[:200]
    tree = ClusterTree.load(world_dataset)
    image_tokens = {}
    for patch_size in (8, 4):
        size = TinySize(patch_size=patch_size, vision_hidden_size=32, vision_layers=1)
        model, processor = build_tiny_model(texts, size=size)
        assert model.config.vision_config.hidden_size == 32
        prompt = build_prompt(_video_item(tree, 1), PromptStyle.VIDEO_COT, tree, 3, processor)
        inputs = generation_batch(processor, [prompt])
        image_tokens[patch_size] = int((inputs["input_ids"] == model.config.image_token_index).sum())
        model(**inputs)
    assert image_tokens == {8: 16, 4: 64}  # (32 / patch)^2 patches of one 32-px frame
    with pytest.raises(ValueError, match="multiple of patch_size"):
        TinySize(patch_size=5)

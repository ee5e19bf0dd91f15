"""The real VLM families (tiny, randomly initialised, built offline) through the same code as the default:
load, fine-tune (full and LoRA), evaluate, infer under Ray Data; every prompt style; native video input."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from serendipity.config import PipelineConfig, with_overrides
from serendipity.layout import WorkLayout
from serendipity.mllm import torchvision_compat
from serendipity.mllm.data import (
    IGNORE_INDEX,
    build_finetune_data,
    decode_items,
    finetune_examples,
    load_items,
    load_sft,
    load_tree,
    prompt_inputs,
    training_batch,
)
from serendipity.mllm.model import MllmLoadError, load_model
from serendipity.mllm.prompts import PromptStyle
from serendipity.mllm.tiny import FAMILIES, init_tiny_model
from serendipity.mllm.torchvision_compat import torchvision_problem
from serendipity.mllm.training import evaluate_validation, train_steps, training_optimizer

pytestmark = pytest.mark.slow

MODEL_CLASSES = {
    "llava": "LlavaForConditionalGeneration",
    "gemma3": "Gemma3ForConditionalGeneration",
    "paligemma": "PaliGemmaForConditionalGeneration",
    "smolvlm": "Idefics3ForConditionalGeneration",
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "llava_onevision": "LlavaOnevisionForConditionalGeneration",
}
# torchvision is a dependency (constraints.txt pins the release paired with torch); absent or broken, the
# video families are skipped saying why.
TORCHVISION_PROBLEM = torchvision_problem()
NO_TORCHVISION = f"transformers' video processors need torchvision: {TORCHVISION_PROBLEM}"


def _runnable(name: str) -> bool:
    return not FAMILIES[name].native_video or TORCHVISION_PROBLEM is None


FAMILY_PARAMS = [
    pytest.param(name, marks=pytest.mark.skipif(not _runnable(name), reason=NO_TORCHVISION))
    for name in FAMILIES
]


@pytest.fixture(scope="session")
def families_config(mined: PipelineConfig) -> PipelineConfig:
    """The mined chain's config with a video prompt (frames), small batches and two beams."""
    settings = {"prompt_style": "video_cot", "num_frames": 2, "num_beams": 2, "batch_size": 4}
    return with_overrides(mined, {f"mllm.{key}": value for key, value in settings.items()})


@pytest.fixture(scope="session")
def family_dirs(families_config: PipelineConfig, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every family buildable here, saved once as a Hugging Face directory (tokenizer on the catalogue)."""
    root = tmp_path_factory.mktemp("families")
    catalog = WorkLayout.of(families_config).catalog_dir()
    size = families_config.mllm.image_size
    return {
        name: init_tiny_model(root / name, catalog, architecture=name, image_size=size)  # type: ignore[arg-type]
        for name in FAMILIES
        if _runnable(name)
    }


def _losses(model: Any, processor: Any, examples: list, config: PipelineConfig, steps: int) -> list[float]:
    losses: list[float] = []
    model.train()
    train_steps(
        model,
        processor,
        training_optimizer(model, config.mllm.learning_rate),
        examples,
        device=model.device,
        seed=config.mllm.seed,
        batch_size=config.mllm.batch_size,
        max_steps=steps,
        eval_every=1,
        on_evaluation=lambda _step, loss: losses.append(loss),
    )
    return losses


def _assert_answer_labels(processor: Any, example: Any) -> None:
    """The loss is on the target tokens + EOS only; PaliGemma also marks exactly them as its suffix."""
    batch = training_batch(processor, [example])
    labelled = batch["labels"][0] != IGNORE_INDEX
    tokenizer = processor.tokenizer
    assert tokenizer.decode(batch["input_ids"][0][labelled][:-1]).strip() == example.target.strip()
    assert int(batch["input_ids"][0][labelled][-1]) == tokenizer.eos_token_id
    assert (batch["labels"][0][labelled] == batch["input_ids"][0][labelled]).all()
    if type(processor).__name__ == "PaliGemmaProcessor":
        assert (batch["token_type_ids"][0] == 1).tolist() == labelled.tolist()


@pytest.mark.parametrize("family", FAMILY_PARAMS)
def test_family_loads_finetunes_evaluates(
    family: str, families_config: PipelineConfig, family_dirs: dict[str, Path]
) -> None:
    from serendipity.mllm.training import _model_for_training

    config = families_config
    model, processor = load_model(family_dirs[family])
    assert type(model).__name__ == MODEL_CLASSES[family]
    data = build_finetune_data(config, processor)
    item_examples = [e for e in data.train if e.context_item_id is not None]
    assert item_examples and not data.quarantined
    assert all(not e.prompt.media_fallback for e in item_examples)
    _assert_answer_labels(processor, item_examples[0])
    _assert_answer_labels(processor, data.train[-1])  # a description recitation (text only)

    losses = _losses(model, processor, data.train, config, steps=4)
    assert all(math.isfinite(loss) for loss in losses) and losses[-1] < losses[0]
    metrics = evaluate_validation(model, processor, data, config)
    assert metrics["items"] == len(data.validation_items) > 0
    assert 0.0 <= metrics["recall"] <= metrics["recall_at_k"] <= 1.0

    lora_model, _ = _model_for_training(str(family_dirs[family]), None, lora=True)
    trainable = {n: p.detach().clone() for n, p in lora_model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    lora_losses = _losses(lora_model, processor, data.train, config, steps=2)
    assert all(math.isfinite(loss) for loss in lora_losses)
    changed = [n for n, p in lora_model.named_parameters() if n in trainable and not p.equal(trainable[n])]
    assert changed


@pytest.fixture(scope="session")
def curated_rows(families_config: PipelineConfig) -> tuple[Any, pd.DataFrame, pd.DataFrame]:
    """The tree, two curated train rows and their items (decoded per style in the test)."""
    layout = WorkLayout.of(families_config)
    sft = load_sft(layout)
    rows = sft[sft["split"] == "train"].head(2)
    return load_tree(layout), rows, load_items(layout, rows["context_item_id"].tolist())


def _curated_examples(config: PipelineConfig, curated: tuple, style: PromptStyle, processor: Any) -> list:
    tree, rows, items = curated
    media = decode_items(items, config, style)
    return finetune_examples(tree, rows, media, config.mining.level, style, processor).train


@pytest.mark.parametrize("family", FAMILY_PARAMS)
def test_every_prompt_style_renders_and_trains(
    family: str, families_config: PipelineConfig, family_dirs: dict[str, Path], curated_rows: tuple
) -> None:
    items = curated_rows[2]
    model, processor = load_model(family_dirs[family])
    for style in PromptStyle:
        examples = _curated_examples(families_config, curated_rows, style, processor)
        example = examples[0]
        assert example.prompt.style is style and not example.prompt.media_fallback
        assert (items.loc[example.context_item_id, "title"][:10] in example.prompt.text) == style.shows_title
        video = style.samples_frames and FAMILIES[family].native_video
        assert example.prompt.as_video == video
        losses = _losses(model, processor, [example, examples[-1]], families_config, steps=1)
        assert math.isfinite(losses[0]), (family, style)


@pytest.mark.parametrize("family", FAMILY_PARAMS)
def test_video_families_receive_one_video(
    family: str, families_config: PipelineConfig, family_dirs: dict[str, Path], curated_rows: tuple
) -> None:
    _, processor = load_model(family_dirs[family])
    example = _curated_examples(families_config, curated_rows, PromptStyle.VIDEO_TEXT, processor)[0]
    inputs = prompt_inputs(processor, example.prompt)
    frames = families_config.mllm.num_frames
    if FAMILIES[family].native_video:
        assert "pixel_values_videos" in inputs and "pixel_values" not in inputs
    else:
        assert "pixel_values_videos" not in inputs
        images = inputs["pixel_values"]
        assert (images.shape[1] if images.dim() == 5 else images.shape[0]) == frames


def test_unrunnable_directories_are_refused_at_load_time(
    family_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = shutil.copytree(family_dirs["llava"], tmp_path / "remote")
    config = json.loads((remote / "config.json").read_text())
    (remote / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "x.Model"}}))
    with pytest.raises(MllmLoadError, match="custom modelling code"):
        load_model(remote)
    video = shutil.copytree(family_dirs["llava"], tmp_path / "video")
    (video / "video_preprocessor_config.json").write_text('{"video_processor_type": "X"}')
    # a machine whose torchvision is absent or broken, whatever this one has
    monkeypatch.setattr(torchvision_compat, "torchvision_problem", lambda: "torchvision is not installed")
    with pytest.raises(MllmLoadError, match="torchvision is not installed"):
        load_model(video)


class _FamiliesPredict:
    """A Ray Data actor holding the pipeline's predictor (``predictor_from_config``) of every family."""

    def __init__(self, config: dict[str, Any], model_dirs: dict[str, str]) -> None:
        from serendipity.mllm.predictor import predictor_from_config

        pipeline = PipelineConfig.model_validate(config)
        self.predictors = {name: predictor_from_config(pipeline, path) for name, path in model_dirs.items()}

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        out = pd.DataFrame({"item_id": batch["item_id"]})
        for name, predictor in self.predictors.items():
            out[name] = [
                ranked[0].cluster_id if ranked else -1 for ranked in predictor.predict(list(batch["media"]))
            ]
        return out


def test_ray_data_infers_with_every_family(
    families_config: PipelineConfig, family_dirs: dict[str, Path], ray_local
) -> None:
    from ray import cloudpickle

    from serendipity.inference.predict import decode_batch, decode_settings
    from serendipity.mllm.generation import serendipitous_candidates

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import test modules
    layout = WorkLayout.of(families_config)
    items = load_items(layout, load_sft(layout)["context_item_id"].unique()[:4].tolist()).reset_index(
        drop=True
    )
    items["content_hash"] = "h"
    # Fractional CPUs: the session's Serve app may hold part of local Ray's 2 CPUs.
    dataset = ray_local.data.from_pandas(items).map_batches(
        decode_batch, fn_kwargs=decode_settings(families_config), batch_format="pandas", num_cpus=0.25
    )
    predicted = dataset.map_batches(
        _FamiliesPredict,
        fn_constructor_kwargs={
            "config": families_config.model_dump(mode="json"),
            "model_dirs": {name: str(path) for name, path in family_dirs.items()},
        },
        concurrency=1,
        num_cpus=0.25,
        batch_size=4,
        batch_format="pandas",
    ).to_pandas()
    assert sorted(predicted["item_id"]) == sorted(items["item_id"])
    tree, level = load_tree(layout), families_config.mining.level
    own = items.set_index("item_id")[f"c{level}"]
    for name in family_dirs:
        for item_id, cluster in zip(predicted["item_id"], predicted[name], strict=True):
            assert cluster in serendipitous_candidates(tree, int(own[item_id]), level), name

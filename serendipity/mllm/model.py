"""Loading and publishing Hugging Face image-text-to-text model directories.

Any directory written by ``save_pretrained`` (model + processor) works: the tiny models built by
``serendipity.mllm.tiny`` or a real pretrained VLM (Qwen2-VL, Qwen2.5-VL, SmolVLM, LLaVA-OneVision,
PaliGemma, Gemma 3, LLaVA). What cannot work through this code is refused at load time, saying why.
Fine-tuned models are published as versioned directories next to a ``latest`` pointer file, each with a
``ModelMetadata`` (``serendipity_model.json``) that says how it was built or fine-tuned.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from serendipity.io import write_text_atomic
from serendipity.layout import LATEST_MODEL_POINTER

MODEL_DIR_PREFIX = "mllm-"
MODEL_METADATA_FILE = "serendipity_model.json"
MODEL_CONFIG_FILE = "config.json"  # what save_pretrained writes first: its presence marks a model directory
_PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
_VIDEO_PROCESSOR_FILE = "video_preprocessor_config.json"
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


class MllmLoadError(ValueError):
    """A model directory is missing, incomplete or not an image-text-to-text model."""


class ModelMetadata(BaseModel):
    """``serendipity_model.json`` beside a model: how fine-tuning made it, or how the tiny model was built.

    Written by ``save_model`` and read by ``model_metadata``. The JSON keys are the field names, written in
    this order and only when set (a metadata file of another version keeps its keys); a directory without
    the file has empty metadata.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    # fine-tuned and published (serendipity.mllm.finetune)
    base_model_dir: str | None = None
    steps: int | None = None
    prompt_style: str | None = None
    num_frames: int | None = None
    level: int | None = None
    lora: bool | None = None
    final_metrics: dict[str, Any] | None = None  # the last evaluation row of training
    checkpoint: str | None = None
    prior_weight: float | None = None  # lambda of the combined nominator
    text_weight: float | None = None  # mu of the text-similarity feature
    prior_snapshot: str | None = None
    # built from random weights by serendipity.mllm.tiny
    architecture: str | None = None
    dataset_dir: str | None = None
    image_size: int | None = None
    tiny_random: bool = False

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="python", exclude_unset=True)

    def text(self) -> str:
        """The file's text."""
        return json.dumps(self.to_json(), indent=2, default=str)

    def digest(self) -> str:
        """A short digest of the metadata (what a published version's name ends with)."""
        return hashlib.sha1(json.dumps(self.to_json(), sort_keys=True, default=str).encode()).hexdigest()[:8]


def resolve_model_dir(path: str | Path) -> Path:
    """Follow a ``latest`` pointer: a directory holding only versions resolves to the one it names."""
    path = Path(path)
    pointer = path / LATEST_MODEL_POINTER
    if path.is_dir() and not (path / MODEL_CONFIG_FILE).exists() and pointer.is_file():
        target = path / pointer.read_text().strip()
        if not target.is_dir():
            raise MllmLoadError(f"{pointer} names {target.name!r}, which is not a directory under {path}")
        return target
    return path


def _check_directory(path: Path) -> None:
    if not path.exists():
        raise MllmLoadError(
            f"model directory {path} does not exist (run `serendipity mllm init --out {path}`)"
        )
    if not path.is_dir():
        raise MllmLoadError(f"model path {path} is not a directory")
    missing = []
    if not (path / MODEL_CONFIG_FILE).is_file():
        missing.append(MODEL_CONFIG_FILE)
    if not any(f.suffix in _WEIGHT_SUFFIXES or f.name.endswith(".index.json") for f in path.iterdir()):
        missing.append("model weights (*.safetensors or *.bin)")
    if not any((path / name).is_file() for name in _PROCESSOR_FILES):
        missing.append(f"a processor ({' or '.join(_PROCESSOR_FILES)})")
    if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        missing.append("a tokenizer (tokenizer.json or tokenizer_config.json)")
    if missing:
        raise MllmLoadError(f"model directory {path} is incomplete: missing {', '.join(missing)}")


def _check_runnable(path: Path) -> None:
    """Refuse what this code cannot run: custom modelling code, or a video processor without torchvision."""
    from serendipity.mllm.torchvision_compat import INSTALL_HINT, torchvision_problem

    raw = json.loads((path / MODEL_CONFIG_FILE).read_text())
    if "auto_map" in raw:
        raise MllmLoadError(
            f"model directory {path} needs custom modelling code (config.json has auto_map), which "
            "serendipity does not run (no trust_remote_code); convert it to a transformers architecture"
        )
    processor_config = path / _PROCESSOR_FILES[0]
    has_video = (path / _VIDEO_PROCESSOR_FILE).is_file() or (
        processor_config.is_file() and "video_processor" in json.loads(processor_config.read_text())
    )
    problem = torchvision_problem() if has_video else None
    if problem is not None:
        raise MllmLoadError(
            f"model directory {path} holds a {raw.get('model_type')!r} model whose processor takes video, "
            f"and transformers' video processors need torchvision: {problem}; {INSTALL_HINT}"
        )


def _model_class(path: Path, config: Any) -> Any:
    import transformers
    from transformers import AutoModelForImageTextToText
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    if getattr(config, "model_type", None) in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        return AutoModelForImageTextToText
    for name in getattr(config, "architectures", None) or []:
        model_class = getattr(transformers, name, None)
        if model_class is not None and name.endswith("ForConditionalGeneration"):
            return model_class
    raise MllmLoadError(
        f"model directory {path} holds a {config.model_type!r} model, which is not an image-text-to-text "
        f"model (AutoModelForImageTextToText does not know it and config.json names no known architecture)"
    )


def load_model(model_dir: str | Path, *, device: str | None = None, dtype: Any = None) -> tuple[Any, Any]:
    """Load ``(model, processor)`` from a model directory (or a directory with a ``latest`` pointer)."""
    from transformers import AutoConfig, AutoProcessor

    path = resolve_model_dir(Path(model_dir).expanduser())
    _check_directory(path)
    _check_runnable(path)
    try:
        config = AutoConfig.from_pretrained(path)
    except (ValueError, KeyError, OSError) as error:
        raise MllmLoadError(f"model directory {path}: config.json cannot be read: {error}") from None
    model_class = _model_class(path, config)
    try:
        processor = AutoProcessor.from_pretrained(path)
    except (ValueError, KeyError, OSError, TypeError) as error:
        raise MllmLoadError(f"model directory {path}: the processor cannot be loaded: {error}") from None
    if getattr(processor, "image_processor", None) is None or getattr(processor, "tokenizer", None) is None:
        raise MllmLoadError(
            f"model directory {path}: the processor {type(processor).__name__} has no image processor "
            f"and tokenizer; an image-text-to-text model needs both"
        )
    tokenizer = processor.tokenizer
    if tokenizer.pad_token is None:  # batches need padding; the answer ends at EOS anyway
        tokenizer.pad_token = tokenizer.eos_token
    kwargs = {"dtype": dtype} if dtype is not None else {}
    try:
        model = model_class.from_pretrained(path, **kwargs)
    except (ValueError, KeyError, OSError, RuntimeError) as error:
        raise MllmLoadError(f"model directory {path}: the weights cannot be loaded: {error}") from None
    if device is not None:
        model = model.to(device)
    model.eval()
    return model, processor


def takes_video(processor: Any) -> bool:
    """Whether the processor takes a video natively (a video processor and a video token: Qwen2-VL,
    LLaVA-OneVision); others get a video's frames as images."""
    return getattr(processor, "video_processor", None) is not None and bool(
        getattr(processor, "video_token", None)
    )


def answer_token_type(processor: Any) -> int:
    """The ``token_type_ids`` value of answer tokens: PaliGemma's processor marks its ``suffix`` (the
    answer) with 1, which makes the prompt prefix attend bidirectionally; every other family uses 0."""
    import inspect

    return 1 if "suffix" in inspect.signature(type(processor).__call__).parameters else 0


def image_placeholder(processor: Any) -> str:
    """The text a prompt uses for one image; the processor expands it to the image's tokens."""
    token = getattr(processor, "image_token", None) or getattr(processor.tokenizer, "image_token", None)
    if not token:
        raise MllmLoadError(f"processor {type(processor).__name__} names no image token")
    return str(token)


def save_model(
    model: Any, processor: Any, out_dir: str | Path, metadata: ModelMetadata | None = None
) -> Path:
    """Save model and processor into ``out_dir`` atomically (a temporary sibling, then a rename)."""
    from serendipity.io import atomic_directory

    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        if metadata is not None:
            (tmp / MODEL_METADATA_FILE).write_text(metadata.text())
    return out_dir


def publish_model(model: Any, processor: Any, models_dir: str | Path, metadata: ModelMetadata) -> Path:
    """Save a versioned ``mllm-<timestamp>-<hash>`` directory and point ``models_dir/latest`` at it."""
    models_dir = Path(models_dir)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    version_dir = models_dir / f"{MODEL_DIR_PREFIX}{stamp}-{metadata.digest()}"
    save_model(model, processor, version_dir, metadata)
    write_text_atomic(version_dir.name, models_dir / LATEST_MODEL_POINTER)
    return version_dir


def model_metadata(model_dir: str | Path) -> ModelMetadata:
    """What ``save_model`` recorded beside a (resolved) model directory (empty when nothing was)."""
    info = resolve_model_dir(model_dir) / MODEL_METADATA_FILE
    return ModelMetadata.model_validate_json(info.read_bytes()) if info.is_file() else ModelMetadata()


def model_version(model_dir: str | Path) -> str:
    """The version name of a (resolved) model directory, e.g. ``mllm-20260101T000000-ab12cd34``."""
    return resolve_model_dir(model_dir).name

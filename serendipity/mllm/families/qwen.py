"""Qwen2-VL and Qwen2.5-VL: a native-resolution ViT whose 2x2 patches are merged, a Qwen2 decoder with
multimodal rotary positions; byte-level BPE and the ChatML template. Sampled frames go in as one video.
"""

from __future__ import annotations

from typing import Any

from serendipity.mllm.families.common import TinySize, needs_torchvision, token_id, train_tokenizer

SPECIAL = {
    "pad": "<|endoftext|>",
    "eos": "<|im_end|>",
    "im_start": "<|im_start|>",
    "vision_start": "<|vision_start|>",
    "vision_end": "<|vision_end|>",
    "image": "<|image_pad|>",
    "video": "<|video_pad|>",
}
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2


def _processor(processor_class: Any, texts: list[str], size: TinySize) -> Any:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    tokenizer = train_tokenizer(texts, SPECIAL, chat_template=CHAT_TEMPLATE)
    pixels = {"shortest_edge": (size.patch_size * MERGE_SIZE) ** 2, "longest_edge": size.image_size**2}
    shared = {
        "patch_size": size.patch_size,
        "merge_size": MERGE_SIZE,
        "temporal_patch_size": TEMPORAL_PATCH_SIZE,
        "size": pixels,
    }
    return processor_class(
        image_processor=Qwen2VLImageProcessorPil(**shared),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**shared),
        chat_template=CHAT_TEMPLATE,
    )


def _token_ids(tokenizer: Any) -> dict[str, int]:
    return {
        "image_token_id": token_id(tokenizer, SPECIAL["image"]),
        "video_token_id": token_id(tokenizer, SPECIAL["video"]),
        "vision_start_token_id": token_id(tokenizer, SPECIAL["vision_start"]),
        "vision_end_token_id": token_id(tokenizer, SPECIAL["vision_end"]),
    }


def _text(size: TinySize, tokenizer: Any) -> dict[str, Any]:
    half_head = size.hidden_size // 4 // 2  # mrope splits each head's rotary half into t, h, w sections
    temporal = half_head - 2 * (half_head * 3 // 8)
    section = [temporal, half_head * 3 // 8, half_head * 3 // 8]
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section}
    return size.decoder(tokenizer, rope_parameters=rope)


def build_qwen2_vl(texts: list[str], size: TinySize) -> tuple[Any, Any]:
    needs_torchvision("qwen2_vl")
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    processor = _processor(Qwen2VLProcessor, texts, size)
    vision = {
        "depth": size.vision_layers,
        "embed_dim": size.vision_hidden_size,
        "hidden_size": size.hidden_size,
        "num_heads": 4,
        "mlp_ratio": 2,
        "patch_size": size.patch_size,
        "spatial_merge_size": MERGE_SIZE,
        "temporal_patch_size": TEMPORAL_PATCH_SIZE,
    }
    config = Qwen2VLConfig(
        text_config=_text(size, processor.tokenizer), vision_config=vision, **_token_ids(processor.tokenizer)
    )
    return Qwen2VLForConditionalGeneration(config), processor


def build_qwen2_5_vl(texts: list[str], size: TinySize) -> tuple[Any, Any]:
    needs_torchvision("qwen2_5_vl")
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    processor = _processor(Qwen2_5_VLProcessor, texts, size)
    vision = {
        "depth": size.vision_layers,
        "hidden_size": size.vision_hidden_size,
        "intermediate_size": size.vision_hidden_size * 2,
        "out_hidden_size": size.hidden_size,
        "num_heads": 4,
        "patch_size": size.patch_size,
        "spatial_merge_size": MERGE_SIZE,
        "temporal_patch_size": TEMPORAL_PATCH_SIZE,
        "window_size": size.image_size,
        "fullatt_block_indexes": [size.vision_layers - 1],
    }
    config = Qwen2_5_VLConfig(
        text_config=_text(size, processor.tokenizer), vision_config=vision, **_token_ids(processor.tokenizer)
    )
    return Qwen2_5_VLForConditionalGeneration(config), processor

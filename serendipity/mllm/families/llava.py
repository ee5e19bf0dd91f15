"""LLaVA (the default tiny model): a CLIP vision tower + a Llama decoder joined by LLaVA's projector.

No chat template: prompts are image placeholders followed by the text, as LLaVA-1.5's pretraining saw.
"""

from __future__ import annotations

from typing import Any

from serendipity.mllm.families.common import TinySize, token_id, train_tokenizer

SPECIAL = {"pad": "<pad>", "bos": "<s>", "eos": "</s>", "unk": "<unk>", "image": "<image>"}


def build(texts: list[str], size: TinySize) -> tuple[Any, Any]:
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tokenizer = train_tokenizer(texts, SPECIAL)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": size.image_size},
        crop_size={"height": size.image_size, "width": size.image_size},
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=size.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's class token, dropped by the "default" strategy
    )
    text = LlamaConfig(**size.decoder(tokenizer, num_key_value_heads=4, max_position_embeddings=1024))
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**size.vision()),
        text_config=text,
        image_token_index=token_id(tokenizer, SPECIAL["image"]),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    return LlavaForConditionalGeneration(config), processor

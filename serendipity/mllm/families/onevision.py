"""LLaVA-OneVision: a SigLIP vision tower + a Qwen2 decoder, AnyRes image tiles and pooled video frames;
byte-level BPE and the ChatML template. Sampled frames go in as one video.
"""

from __future__ import annotations

from typing import Any

from serendipity.mllm.families.common import TinySize, needs_torchvision, token_id, train_tokenizer

SPECIAL = {
    "pad": "<|endoftext|>",
    "eos": "<|im_end|>",
    "im_start": "<|im_start|>",
    "image": "<image>",
    "video": "<video>",
}
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>\n{% elif part['type'] == 'video' %}<video>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build(texts: list[str], size: TinySize) -> tuple[Any, Any]:
    needs_torchvision("llava_onevision")
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionProcessor,
    )
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
        LlavaOnevisionImageProcessorPil,
    )
    from transformers.models.llava_onevision.video_processing_llava_onevision import (
        LlavaOnevisionVideoProcessor,
    )

    tokenizer = train_tokenizer(texts, SPECIAL, chat_template=CHAT_TEMPLATE)
    square = {"height": size.image_size, "width": size.image_size}
    pinpoints = [[size.image_size, size.image_size]]  # one tile + the base image per picture
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessorPil(size=square, image_grid_pinpoints=pinpoints),
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(size=square),
        num_image_tokens=size.patches_per_side**2,
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
    )
    config = LlavaOnevisionConfig(
        vision_config={**size.vision(), "model_type": "siglip_vision_model"},
        text_config=size.decoder(tokenizer, model_type="qwen2"),
        image_token_index=token_id(tokenizer, SPECIAL["image"]),
        video_token_index=token_id(tokenizer, SPECIAL["video"]),
        vision_feature_select_strategy="full",
        image_grid_pinpoints=pinpoints,
    )
    return LlavaOnevisionForConditionalGeneration(config), processor

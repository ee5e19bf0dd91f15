"""Gemma 3 and PaliGemma: a SigLIP vision tower + a Gemma decoder, with a SentencePiece-style tokenizer.

Gemma 3 prompts go through Gemma's chat template (``<start_of_turn>user ... <start_of_turn>model``);
PaliGemma has no chat template: its processor lays out ``<image>``s, BOS, the prefix and a newline,
and marks the answer (the suffix) with ``token_type_ids`` = 1.
"""

from __future__ import annotations

from typing import Any

from serendipity.mllm.families.common import TinySize, token_id, train_tokenizer

GEMMA3_SPECIAL = {
    "pad": "<pad>",
    "bos": "<bos>",
    "eos": "<eos>",
    "unk": "<unk>",
    "boi": "<start_of_image>",
    "eoi": "<end_of_image>",
    "image": "<image_soft_token>",
    "start_of_turn": "<start_of_turn>",
    "end_of_turn": "<end_of_turn>",
}
PALIGEMMA_SPECIAL = {"pad": "<pad>", "bos": "<bos>", "eos": "<eos>", "unk": "<unk>", "image": "<image>"}
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n"
    "{% if message['content'] is string %}{{ message['content'] | trim }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<start_of_image>"
    "{% elif part['type'] == 'text' %}{{ part['text'] | trim }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def _gemma_text(size: TinySize, tokenizer: Any) -> dict[str, Any]:
    head_dim = size.hidden_size // 4
    return size.decoder(
        tokenizer, head_dim=head_dim, query_pre_attn_scalar=head_dim, max_position_embeddings=1024
    )


def build_gemma3(texts: list[str], size: TinySize) -> tuple[Any, Any]:
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    tokenizer = train_tokenizer(
        texts, GEMMA3_SPECIAL, kind="sentencepiece", chat_template=GEMMA3_CHAT_TEMPLATE
    )
    image_processor = Gemma3ImageProcessorPil(size={"height": size.image_size, "width": size.image_size})
    tokens_per_image = 4  # 2x2 pooled patches
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_length=tokens_per_image,
        chat_template=GEMMA3_CHAT_TEMPLATE,
    )
    config = Gemma3Config(
        text_config={**_gemma_text(size, tokenizer), "sliding_window": 256},
        vision_config=size.vision(),
        mm_tokens_per_image=tokens_per_image,
        boi_token_index=token_id(tokenizer, GEMMA3_SPECIAL["boi"]),
        eoi_token_index=token_id(tokenizer, GEMMA3_SPECIAL["eoi"]),
        image_token_index=token_id(tokenizer, GEMMA3_SPECIAL["image"]),
    )
    return Gemma3ForConditionalGeneration(config), processor


def build_paligemma(texts: list[str], size: TinySize) -> tuple[Any, Any]:
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    tokenizer = train_tokenizer(texts, PALIGEMMA_SPECIAL, kind="sentencepiece")
    image_processor = SiglipImageProcessorPil(size={"height": size.image_size, "width": size.image_size})
    image_processor.image_seq_length = size.patches_per_side**2
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)  # adds <locNNNN>
    text = _gemma_text(size, tokenizer)
    config = PaliGemmaConfig(
        vision_config={**size.vision(), "projection_dim": size.hidden_size},
        text_config=text,
        image_token_index=token_id(tokenizer, PALIGEMMA_SPECIAL["image"]),
        vocab_size=text["vocab_size"],
        projection_dim=size.hidden_size,
        hidden_size=size.hidden_size,
    )
    return PaliGemmaForConditionalGeneration(config), processor

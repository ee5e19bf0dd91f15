"""SmolVLM (the Idefics3 architecture): a SigLIP-style vision tower, pixel shuffle, a Llama decoder.

Images are not split into tiles (one global image each); prompts use SmolVLM's chat template
(``<|im_start|>User:<image>...<end_of_utterance>\\nAssistant:``).
"""

from __future__ import annotations

from typing import Any

from serendipity.mllm.families.common import TinySize, token_id, train_tokenizer

SPECIAL = {
    "pad": "<|im_end|>",
    "bos": "<|im_start|>",
    "eos": "<end_of_utterance>",
    "unk": "<|endoftext|>",
    "image": "<image>",
    "fake_image": "<fake_token_around_image>",
    "global_image": "<global-img>",
}
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}:"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)
SCALE_FACTOR = 2


def build(texts: list[str], size: TinySize) -> tuple[Any, Any]:
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    tokenizer = train_tokenizer(texts, SPECIAL, chat_template=CHAT_TEMPLATE)
    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=False,
        size={"longest_edge": size.image_size},
        max_image_size={"longest_edge": size.image_size},
    )
    image_seq_len = size.patches_per_side**2 // SCALE_FACTOR**2
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=image_seq_len,
        chat_template=CHAT_TEMPLATE,
    )
    config = Idefics3Config(
        vision_config=size.vision(),
        text_config=size.decoder(tokenizer, model_type="llama"),
        scale_factor=SCALE_FACTOR,
        image_token_id=token_id(tokenizer, SPECIAL["image"]),
        pad_token_id=tokenizer.pad_token_id,
    )
    return Idefics3ForConditionalGeneration(config), processor

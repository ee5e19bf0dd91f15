"""The ``mllm:`` section: the multimodal LLM, its fine-tuning and its publish gate."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from serendipity.config.base import Section
from serendipity.config.gate import GateConfig


class MllmConfig(Section):
    model_dir: str = "models/mllm"
    prompt_style: Literal["text", "video", "video_text", "video_cot", "thumbnail_cot", "frame_cot"] = (
        "video_cot"
    )
    num_frames: Literal[1, 2, 4, 8] = 4
    image_size: int = Field(32, ge=16, le=1024)
    batch_size: int = Field(32, ge=1)
    max_steps: int = Field(300, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    eval_every: int = Field(25, ge=1)
    num_beams: int = Field(3, ge=1)
    num_workers: int = Field(1, ge=1)  # Ray Train workers (DDP); each trains on its share of batch_size
    use_gpu: bool = False
    gpus_per_worker: float = Field(1.0, gt=0)  # with use_gpu
    cpus_per_worker: float = Field(1.0, ge=0)  # Ray Train's default; less lets workers share cores
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 (or fp16) on GPUs, else fp32
    lora: bool = False
    seed: int = 0
    eval_batch_size: int = Field(16, ge=1)
    curve_items: int = Field(200, ge=1)  # validation items of the periodic evaluation while training
    # A nominator feature from pretrained text knowledge: MiniLM cosine of the item's text and each
    # sibling's description, weighted by a fitted mu (serendipity.nomination.similarity).
    text_similarity: bool = False
    max_failures: int = Field(2, ge=0)  # worker-group restarts (from the last checkpoint) before giving up
    # of the tiny model `serendipity mllm init` builds (serendipity.mllm.tiny.FAMILIES)
    architecture: Literal[
        "llava", "gemma3", "paligemma", "smolvlm", "qwen2_vl", "qwen2_5_vl", "llava_onevision"
    ] = "llava"
    gate: GateConfig = GateConfig()  # when a fine-tuned model is published (serendipity.mllm.gate)

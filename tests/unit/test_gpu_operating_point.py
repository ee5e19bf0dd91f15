"""The GPU operating point: precision choice, the start-up memory check, actor GPUs, faiss placement.

The CPU tests check the selection logic and arithmetic (the CPU path is the identity); the ``gpu`` tests
run the in-process training steps, predictor and faiss index on a real GPU and are skipped without one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from serendipity.config import InferenceConfig
from serendipity.inference.driver import actor_gpus
from serendipity.mllm.precision import (
    GIB,
    GpuMemoryError,
    ModelShape,
    check_memory,
    inference_bytes,
    inference_device,
    resolve_precision,
    training_bytes,
)
from serendipity.retrieval.index import ClusterIndex, faiss_gpus

REPO = Path(__file__).resolve().parents[2]
SEVEN_B = ModelShape(
    parameters=7_000_000_000, trainable_parameters=7_000_000_000, hidden_size=4096, num_layers=32
)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_auto_precision_is_fp32_on_a_cpu_and_half_precision_needs_a_gpu_for_fp16() -> None:
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        resolve_precision("fp16", "cpu")


def test_memory_check_names_the_setting_and_the_batch_that_fits() -> None:
    def need(batch: int) -> int:
        return training_bytes(SEVEN_B, batch, 2048, "bf16")

    with pytest.raises(GpuMemoryError, match="even one example does not fit"):
        check_memory("fine-tuning", "mllm.batch_size", 8, need, 80 * GIB, "an 80 GiB GPU")
    lora = ModelShape(SEVEN_B.parameters, 40_000_000, SEVEN_B.hidden_size, SEVEN_B.num_layers)

    def lora_need(batch: int) -> int:
        return training_bytes(lora, batch, 2048, "bf16")

    with pytest.raises(
        GpuMemoryError, match=r"mllm.batch_size=64 needs about .* set mllm.batch_size to at most (\d+)"
    ) as error:
        check_memory("fine-tuning", "mllm.batch_size", 64, lora_need, 80 * GIB, "an 80 GiB GPU")
    fitting = int(str(error.value).rsplit("at most ", 1)[1])
    assert lora_need(fitting) <= 0.9 * 80 * GIB < lora_need(fitting + 1)
    assert check_memory("fine-tuning", "mllm.batch_size", fitting, lora_need, 80 * GIB, "gpu") == lora_need(
        fitting
    )
    assert inference_bytes(SEVEN_B, 1, 4, 2048, "bf16") < inference_bytes(SEVEN_B, 1, 4, 2048, "fp32")


def test_model_shape_counts_trainable_parameters_of_a_lora_model() -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2)  # fmt: skip
    full = ModelShape.of(LlamaForCausalLM(config))
    assert full.parameters == full.trainable_parameters and (full.hidden_size, full.num_layers) == (32, 2)
    lora = ModelShape.of(
        get_peft_model(LlamaForCausalLM(config), LoraConfig(r=2, target_modules="all-linear"))
    )
    assert 0 < lora.trainable_parameters < lora.parameters


def test_predictor_actors_ask_for_gpus_only_where_there_are_some() -> None:
    assert actor_gpus(InferenceConfig(), cluster_gpus=0) == 0.0
    assert actor_gpus(InferenceConfig(), cluster_gpus=8) == 1.0
    assert actor_gpus(InferenceConfig(num_gpus_per_actor=0.5), cluster_gpus=0) == 0.5
    assert inference_device(0) is None and inference_device(1) == "cuda"
    assert inference_device(None) == ("cuda" if torch.cuda.is_available() else None)


def _index() -> ClusterIndex:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((300, 16), dtype=np.float32)
    return ClusterIndex.build(np.arange(300) * 7, rng.integers(0, 5, size=300), vectors, flat_max_items=100)


@pytest.mark.skipif(faiss_gpus() > 0, reason="checks the CPU path")
def test_without_faiss_gpus_the_index_stays_on_the_cpu_unchanged(tmp_path: Path) -> None:
    index = _index()
    before = {cluster: partition.index for cluster, partition in index._partitions.items()}
    assert index.to_gpu() is index and index.device == "cpu"
    assert {cluster: partition.index for cluster, partition in index._partitions.items()} == before
    index.save(tmp_path)
    assert ClusterIndex.load(tmp_path).device == "cpu"
    with pytest.raises(RuntimeError, match="faiss sees no GPU"):
        ClusterIndex.load(tmp_path, use_gpu=True)


def _gpu_check(args: list[str], output: Path) -> dict[str, Any]:
    """``python -m bench.gpu_check ARGS --output OUTPUT`` run from the repository root, as documented."""
    command = [sys.executable, "-m", "bench.gpu_check", *args, "--output", str(output)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(output.read_text())


def test_gpu_check_runs_on_the_cpu(tmp_path: Path) -> None:
    args = ["--device", "cpu", "--steps", "1", "--items", "2", "--batch-size", "2", "--index-items", "500"]
    figures = _gpu_check(args, tmp_path / "gpu_check.json")
    assert figures["precision"] == "fp32" and figures["training"]["s_per_step"] > 0
    assert figures["inference"]["named_clusters"] > 0 and figures["faiss"]["same_results_as_cpu"]
    assert (tmp_path / "gpu_check.json").is_file()


@pytest.mark.gpu
@needs_cuda
def test_training_steps_and_predictor_run_on_the_gpu_in_half_precision(tmp_path: Path) -> None:
    figures = _gpu_check(["--steps", "3", "--items", "8"], tmp_path / "gpu.json")
    assert figures["precision"] in ("bf16", "fp16")
    assert np.isfinite(figures["training"]["losses"]).all() and figures["training"]["peak_gpu_gib"] > 0
    assert figures["inference"]["named_clusters"] > 0


@pytest.mark.gpu
@pytest.mark.skipif(faiss_gpus() == 0, reason="needs faiss-gpu and a GPU")
def test_the_index_on_the_gpu_returns_the_cpu_results(tmp_path: Path) -> None:
    index = _index()
    queries = np.random.default_rng(1).standard_normal((20, 16), dtype=np.float32)
    targets = [0, 1, 2, 3, 4, None] * 4
    on_cpu = [index.search(q, 5, c)[0].tolist() for q, c in zip(queries, targets, strict=False)]
    index.save(tmp_path)
    on_gpu = ClusterIndex.load(tmp_path)
    assert on_gpu.device == "gpu"
    assert [on_gpu.search(q, 5, c)[0].tolist() for q, c in zip(queries, targets, strict=False)] == on_cpu
    on_gpu.save(tmp_path / "again")  # serialised from the GPU copy

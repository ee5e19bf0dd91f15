"""Fine-tune the multimodal LLM with Ray Train (TorchTrainer), then publish a versioned model directory.

In-process: ``python -m ray_jobs.finetune --config configs/demo.yaml``; on a cluster:
``ray job submit --working-dir . -- python -m ray_jobs.finetune --config configs/demo.yaml``.
A killed run resumes from its last checkpoint when started again (``--fresh`` starts over).
The options override the config's ``mllm`` section (the KubeRay RayJob sets workers, GPUs, bf16, LoRA)
and where Ray Train places the workers (``--placement STRICT_SPREAD``: one per node).
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from serendipity.config import PipelineConfig, load_config, with_overrides
from serendipity.logs import run_logged, setup_logging
from serendipity.worklock import holds_work_dir

if TYPE_CHECKING:
    from serendipity.mllm.results import FinetuneSummary


@holds_work_dir("finetune")
def run(config: PipelineConfig, *, max_steps: int | None = None, fresh: bool = False) -> FinetuneSummary:
    """Fine-tune, gate and publish; ``max_steps`` overrides mllm.max_steps. Returns the run's summary."""
    from serendipity.mllm.finetune import run_finetune

    summary = run_finetune(with_overrides(config, {"mllm.max_steps": max_steps}), fresh=fresh)
    if summary.gate is not None and summary.gate.decision is not None:
        from serving.metrics import record_gate_decision

        record_gate_decision(summary.gate.decision)
    from serendipity.mllm.judge import describe

    headline = {
        "model_version": summary.model_version,
        "feature_version": summary.feature_version,
        "steps": summary.steps,
        "final_metrics": summary.final_metrics,
        "served_metrics": summary.served_metrics.to_json() if summary.served_metrics else None,
        "prior_weight": summary.prior_weight,
    }
    print(json.dumps(headline, indent=2, default=str))
    print("\n".join(describe(summary)))
    return summary


def parse_options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="pipeline YAML (configs/demo.yaml, ...)")
    parser.add_argument("--max-steps", type=int, default=None, help="overrides mllm.max_steps")
    parser.add_argument("--fresh", action="store_true", help="ignore existing checkpoints and start over")
    parser.add_argument("--num-workers", type=int, default=None, help="mllm.num_workers (DDP workers)")
    parser.add_argument(
        "--gpus-per-worker", type=float, default=None, help="mllm.gpus_per_worker (sets use_gpu)"
    )
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default=None)
    parser.add_argument("--lora", action="store_true", default=None, help="train LoRA adapters (mllm.lora)")
    parser.add_argument(
        "--placement",
        choices=("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"),
        default=None,
        help="ray.train_placement (STRICT_SPREAD: one worker per node)",
    )
    return parser.parse_args(argv)


def config_of(options: argparse.Namespace) -> PipelineConfig:
    """The config file with the command line's ``mllm`` overrides."""
    gpus = options.gpus_per_worker
    overrides = {
        "mllm.num_workers": options.num_workers,
        "mllm.gpus_per_worker": gpus,
        "mllm.use_gpu": True if gpus else None,
        "mllm.precision": options.precision,
        "mllm.lora": options.lora,
        "ray.train_placement": options.placement,
    }
    return with_overrides(load_config(options.config), overrides)


def main(argv: list[str] | None = None) -> FinetuneSummary:
    options = parse_options(argv)
    setup_logging()
    config = config_of(options)
    return run_logged("finetune", lambda: run(config, max_steps=options.max_steps, fresh=options.fresh))


if __name__ == "__main__":
    main()

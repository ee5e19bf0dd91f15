"""Fine-tune the multimodal LLM with Ray Train (TorchTrainer), then publish a versioned model directory.

In-process: ``python -m ray_jobs.finetune --config configs/demo.yaml``; on a cluster:
``ray job submit --working-dir . -- python -m ray_jobs.finetune --config configs/demo.yaml``.
A killed run resumes from its last checkpoint when started again (``--fresh`` starts over).
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from serendipity.config import PipelineConfig, load_config, with_overrides
from serendipity.worklock import holds_work_dir


@holds_work_dir("finetune")
def run(config: PipelineConfig, *, max_steps: int | None = None, fresh: bool = False) -> dict[str, Any]:
    """Fine-tune, gate and publish; ``max_steps`` overrides mllm.max_steps. Returns the run's summary."""
    from serendipity.mllm.finetune import run_finetune

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    summary = run_finetune(with_overrides(config, {"mllm.max_steps": max_steps}), fresh=fresh)
    keys = ("model_version", "steps", "final_metrics", "served_metrics", "non_llm_baseline", "gate")
    brief = {key: summary[key] for key in keys}
    print(json.dumps(brief, indent=2, default=str))
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="pipeline YAML (configs/demo.yaml, ...)")
    parser.add_argument("--max-steps", type=int, default=None, help="overrides mllm.max_steps")
    parser.add_argument("--fresh", action="store_true", help="ignore existing checkpoints and start over")
    args = parser.parse_args(argv)
    return run(load_config(args.config), max_steps=args.max_steps, fresh=args.fresh)


if __name__ == "__main__":
    main()

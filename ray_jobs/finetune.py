"""Fine-tune the multimodal LLM with Ray Train (TorchTrainer), then publish a versioned model directory.

In-process: ``python -m ray_jobs.finetune --config configs/demo.yaml``; on a cluster:
``ray job submit --working-dir . -- python -m ray_jobs.finetune --config configs/demo.yaml``.
A killed run resumes from its last checkpoint when started again (``--fresh`` starts over).
"""

from __future__ import annotations

import argparse
import json
import logging


def main(argv: list[str] | None = None) -> dict:
    from serendipity.config import load_config
    from serendipity.mllm.finetune import run_finetune

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="pipeline YAML (configs/demo.yaml, ...)")
    parser.add_argument("--max-steps", type=int, default=None, help="overrides mllm.max_steps")
    parser.add_argument("--fresh", action="store_true", help="ignore existing checkpoints and start over")
    args = parser.parse_args(argv)
    overrides = {"mllm.max_steps": args.max_steps} if args.max_steps is not None else None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    summary = run_finetune(load_config(args.config, overrides), fresh=args.fresh)
    brief = {key: summary[key] for key in ("model_version", "steps", "final_metrics", "non_llm_baseline")}
    print(json.dumps(brief, indent=2, default=str))
    return summary


if __name__ == "__main__":
    main()

"""Train the SASRec retriever with Ray Train, evaluate it against popularity, build the per-cluster index.

In-process: ``python -m ray_jobs.train_retriever --config configs/demo.yaml``; on a cluster:
``ray job submit --working-dir . -- python -m ray_jobs.train_retriever --config configs/demo.yaml``.
Writes ``<work_dir>/retriever/`` (model, items, index, metrics.json) atomically.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from serendipity.config import load_config
    from serendipity.retrieval.artifacts import run_train_retriever

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="pipeline YAML (configs/demo.yaml, ...)")
    parser.add_argument("--epochs", type=int, default=None, help="overrides retrieval.epochs")
    parser.add_argument("--no-ray", action="store_true", help="train in this process instead of Ray Train")
    args = parser.parse_args(argv)
    overrides = {"retrieval.epochs": args.epochs} if args.epochs is not None else None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    metrics = run_train_retriever(load_config(args.config, overrides), use_ray=not args.no_ray)
    print(json.dumps(metrics, indent=2, default=str))
    return metrics


if __name__ == "__main__":
    main()

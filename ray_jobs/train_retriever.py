"""Train the SASRec retriever with Ray Train, evaluate it against popularity, build the per-cluster index.

In-process: ``python -m ray_jobs.train_retriever --config configs/demo.yaml``; on a cluster:
``ray job submit --working-dir . -- python -m ray_jobs.train_retriever --config configs/demo.yaml``.
Writes ``<work_dir>/retriever/`` (model, items, index, metrics.json) atomically.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from serendipity.config import PipelineConfig, load_config, with_overrides
from serendipity.logs import run_logged, setup_logging
from serendipity.worklock import holds_work_dir

if TYPE_CHECKING:
    from serendipity.retrieval.holdout_figures import RetrieverMetrics


@holds_work_dir("train_retriever")
def run(config: PipelineConfig, *, epochs: int | None = None, use_ray: bool = True) -> RetrieverMetrics:
    """Train, evaluate and publish the retriever (``epochs`` overrides retrieval.epochs); its metrics."""
    from serendipity.retrieval.artifacts import train_and_publish_retriever

    overridden = with_overrides(config, {"retrieval.epochs": epochs})
    metrics = train_and_publish_retriever(overridden, use_ray=use_ray)
    print(json.dumps(metrics.to_json(), indent=2, default=str))
    return metrics


def main(argv: list[str] | None = None) -> RetrieverMetrics:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="pipeline YAML (configs/demo.yaml, ...)")
    parser.add_argument("--epochs", type=int, default=None, help="overrides retrieval.epochs")
    parser.add_argument("--no-ray", action="store_true", help="train in this process instead of Ray Train")
    args = parser.parse_args(argv)
    setup_logging()
    config = load_config(args.config)
    return run_logged("train_retriever", lambda: run(config, epochs=args.epochs, use_ray=not args.no_ray))


if __name__ == "__main__":
    main()

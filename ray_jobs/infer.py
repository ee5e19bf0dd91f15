"""Ray Data batch inference: serendipitous_cluster(context_item) for the popular corpus, incrementally.

    python -m ray_jobs.infer --config configs/demo.yaml            # in-process, local Ray
    ray job submit --working-dir . -- python -m ray_jobs.infer --config configs/demo.yaml

The work is ``serendipity.inference.run_inference``; this job connects to Ray and records its figures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from serendipity.config import PipelineConfig, load_config
from serendipity.inference import run_inference
from serendipity.inference.summary import InferenceSummary
from serendipity.layout import WorkLayout
from serendipity.logs import run_logged, setup_logging
from serendipity.ray_local import init_local_ray
from serendipity.worklock import holds_work_dir
from serving.metrics import record_batch_inference


@holds_work_dir("infer")
def run(
    config: PipelineConfig, *, model_dir: Path | None = None, delta_only: bool = False
) -> InferenceSummary:
    """Infer the corpus (or only its delta) not yet done under the model; returns and records the figures.

    Joins the Ray already initialised, else RAY_ADDRESS's cluster, else a private local Ray.
    """
    init_local_ray(config.ray, log_to_driver=False)
    figures = run_inference(config, model_dir, delta_only)
    figures.write(WorkLayout.of(config).job_stats_path("infer"))
    tally = figures.tally
    record_batch_inference(tally.inferred_ok, tally.inferred - tally.inferred_ok, figures.seconds)
    return figures


def main(argv: list[str] | None = None) -> InferenceSummary:
    import ray

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="pipeline YAML (configs/demo.yaml, ...)")
    parser.add_argument("--model-dir", type=Path, default=None, help="defaults to the published model")
    parser.add_argument("--delta-only", action="store_true", help="only the corpus delta of new items")
    parser.add_argument(
        "--address", default=None, help="Ray address ('local' starts a private one); default: RAY_ADDRESS"
    )
    args = parser.parse_args(argv)
    setup_logging()
    config = load_config(args.config)
    if not ray.is_initialized():
        ray.init(address=args.address, log_to_driver=False, configure_logging=False)
    figures = run_logged("infer", lambda: run(config, model_dir=args.model_dir, delta_only=args.delta_only))
    print(json.dumps(figures.to_json(), indent=2))
    return figures


if __name__ == "__main__":
    main()

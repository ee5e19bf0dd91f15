"""The simulated live experiment (exploitation, exploration, bandit, MLLM arms) as a Ray job.

    python -m ray_jobs.evaluate --config configs/demo.yaml [--seeds 0,1,2] [--days 3] [--users-per-arm 100]
    ray job submit --working-dir . -- python -m ray_jobs.evaluate --config configs/demo.yaml

Writes reports/experiment/impressions.parquet and experiment.json under the config's work_dir.
"""

from __future__ import annotations

import argparse
import json
import logging

from serendipity.config import PipelineConfig, load_config, parse_seeds, with_overrides
from serendipity.eval.results import ExperimentPaths
from serendipity.logs import run_logged, setup_logging
from serendipity.worklock import holds_work_dir

log = logging.getLogger("serendipity.evaluate")
HEADLINE_METRICS = ("positive_feedback_ratio", "novel_impression_ratio", "cluster_novelty")


@holds_work_dir("evaluate")
def run(
    config: PipelineConfig,
    *,
    seeds: list[int] | None = None,
    days: int | None = None,
    users_per_arm: int | None = None,
) -> ExperimentPaths:
    """Simulate the arms; the options override eval.seeds, eval.days and eval.users_per_arm.

    Returns the paths written (``experiment``: the ``ExperimentSummary``, ``impressions``).
    """
    from serendipity.eval.experiment import run_live_experiment

    overrides = {"eval.seeds": seeds, "eval.days": days, "eval.users_per_arm": users_per_arm}
    result = run_live_experiment(with_overrides(config, overrides))
    metrics = result.summary.metrics
    headline = {
        metric: {arm: value.mean for arm, value in metrics.get(metric, {}).items()}
        for metric in HEADLINE_METRICS
    }
    log.info("experiment written to %s: %s", result.paths.experiment, json.dumps(headline))
    return result.paths


def _seeds_argument(text: str) -> list[int]:
    try:
        return parse_seeds(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv: list[str] | None = None) -> ExperimentPaths:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="pipeline YAML whose serving chain has run")
    parser.add_argument("--seeds", type=_seeds_argument, help="overrides eval.seeds, e.g. 0,1,2")
    parser.add_argument("--days", type=int, help="overrides eval.days")
    parser.add_argument("--users-per-arm", type=int, help="overrides eval.users_per_arm")
    args = parser.parse_args(argv)
    setup_logging()
    config = load_config(args.config)
    return run_logged(
        "evaluate",
        lambda: run(config, seeds=args.seeds, days=args.days, users_per_arm=args.users_per_arm),
    )


if __name__ == "__main__":
    main()

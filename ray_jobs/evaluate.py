"""The simulated live experiment (exploitation, exploration, bandit, MLLM arms) as a Ray job.

    python -m ray_jobs.evaluate --config configs/demo.yaml [--seeds 0,1,2] [--days 3] [--users-per-arm 100]
    ray job submit --working-dir . -- python -m ray_jobs.evaluate --config configs/demo.yaml

Writes reports/experiment/impressions.parquet and experiment.json under the config's work_dir.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from serendipity.config import load_config

log = logging.getLogger("serendipity.evaluate")


def _seeds(value: str) -> list[int]:
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="pipeline YAML whose serving chain has run")
    parser.add_argument("--seeds", type=_seeds, help="overrides eval.seeds, e.g. 0,1,2")
    parser.add_argument("--days", type=int, help="overrides eval.days")
    parser.add_argument("--users-per-arm", type=int, help="overrides eval.users_per_arm")
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.seeds is not None:
        overrides["eval.seeds"] = args.seeds
    if args.days is not None:
        overrides["eval.days"] = args.days
    if args.users_per_arm is not None:
        overrides["eval.users_per_arm"] = args.users_per_arm
    config = load_config(args.config, overrides=overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from serendipity.eval.experiment import run_live_experiment

    result = run_live_experiment(config)
    headline = {
        metric: {arm: values["mean"] for arm, values in result.report["metrics"][metric].items()}
        for metric in ("positive_feedback_ratio", "novel_impression_ratio", "cluster_novelty")
    }
    log.info("experiment written to %s: %s", result.paths["experiment"], json.dumps(headline))
    return {name: str(path) for name, path in result.paths.items()}


if __name__ == "__main__":
    main()

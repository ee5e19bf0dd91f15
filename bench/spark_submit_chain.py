"""The Spark chain through `infra/spark/submit.sh` (spark-submit), job by job, as a cluster user runs it.

    .venv/bin/python -m bench.spark_submit_chain --config configs/demo.yaml [--master 'local[2]']
        [--work-dir /tmp/submit-demo] [--out bench/results/spark_submit_demo.json]

The work dir defaults to a fresh one beside the config's, so the pipeline's own outputs are untouched.
Records each job's wall time and the row counts the jobs report; prints the aggregates table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from devtools import REPO, VENV_BIN


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--work-dir", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from serendipity.app.stages import Engine, stages_on
    from serendipity.config import load_config, save_config, with_overrides
    from serendipity.layout import WorkLayout
    from serendipity.stage_stats import read_stage_stats

    base = load_config(args.config)
    work_dir = args.work_dir or base.work_dir.with_name(base.work_dir.name + "-spark-submit")
    shutil.rmtree(work_dir, ignore_errors=True)
    config = with_overrides(base, {"work_dir": str(work_dir)})
    config_path = save_config(config, work_dir / "pipeline.yaml")  # what spark-submit's --config reads

    env = {
        **os.environ,
        "SPARK_MASTER": args.master,
        "SPARK_SUBMIT": str(VENV_BIN / "spark-submit"),
        "PYSPARK_PYTHON": str(VENV_BIN / "python"),
        "PYSPARK_DRIVER_PYTHON": str(VENV_BIN / "python"),
    }
    figures: dict[str, object] = {"config": str(args.config), "master": args.master, "jobs": {}}
    log_path = work_dir / "spark-submit.log"
    for stage in stages_on(Engine.SPARK):
        if not stage.enabled(config):  # build_tree: only for a placeholder tree
            continue
        job = stage.job_module.rpartition(".")[2]  # spark_jobs/<job>.py
        started = time.perf_counter()
        with log_path.open("a") as log:
            done = subprocess.run(
                ["bash", str(REPO / "infra" / "spark" / "submit.sh"), job, "--config", str(config_path)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        seconds = round(time.perf_counter() - started, 1)
        layout = WorkLayout.of(config)
        stats = read_stage_stats(layout, job) if layout.job_stats_path(job).exists() else None
        figures["jobs"][job] = {
            "seconds": seconds,
            "exit_code": done.returncode,
            "stats": None if stats is None else stats.to_json(),
        }
        print(f"{job}: exit {done.returncode} in {seconds} s", flush=True)
        if done.returncode != 0:
            figures["failed"] = f"{job}; see {log_path}"
            break
    aggregates = WorkLayout.of(config).aggregates_overall_path
    if aggregates.exists():
        import pandas as pd

        table = pd.read_parquet(aggregates)
        figures["aggregates"] = table.to_dict("records")
        print(table.to_string(index=False))
    figures["total_seconds"] = round(sum(j["seconds"] for j in figures["jobs"].values()), 1)
    out = args.out or REPO / "bench" / "results" / f"spark_submit_{base.name}.json"
    out.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()

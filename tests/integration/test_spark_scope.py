"""The pipeline stops the Spark session (and its JVM) it started before the first non-Spark stage.

The pipeline run is in a child process: the session-wide ``spark`` fixture of this process must never be
stopped, so only a process without one can show that the pipeline leaves no session and no JVM behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from reference.contract_data import write_contract_dataset

from serendipity.config import PipelineConfig, save_config, with_overrides
from spark_jobs.common import SparkScope

PIPELINE_PROBE = """
import dataclasses, json, sys
from pathlib import Path

import psutil
from pyspark import SparkContext
from pyspark.sql import SparkSession

from serendipity.app import pipeline
from serendipity.config import load_config

config = load_config(sys.argv[1])
seen = {}


def probe(config):
    seen["active_session"] = SparkSession.getActiveSession() is not None
    seen["active_context"] = SparkContext._active_spark_context is not None
    seen["java_children"] = [p.pid for p in psutil.Process().children(recursive=True) if "java" in p.name()]
    for path in stage_outputs(config):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")


stages = pipeline.default_stages()
finetune = next(stage for stage in stages if stage.name == "finetune")
stage_outputs = finetune.outputs
probed = [dataclasses.replace(s, run=probe) if s.name == "finetune" else s for s in stages]
pipeline.default_stages = lambda: probed
pipeline.run_pipeline(config, ["validate", "finetune"])
seen["after_run"] = SparkContext._active_spark_context is not None
pipeline.run_pipeline(config, ["corpus"])  # a later Spark stage gets a fresh session
seen["later_corpus"] = SparkContext._active_spark_context is None
print("PROBE " + json.dumps(seen))
"""


def test_pipeline_stops_its_spark_before_the_ray_stages(test_config: PipelineConfig, tmp_path: Path) -> None:
    dataset = write_contract_dataset(tmp_path / "dataset")
    config = with_overrides(test_config, {"dataset_dir": str(dataset), "work_dir": str(tmp_path / "work")})
    config_path = save_config(config, tmp_path / "config.yaml")
    done = subprocess.run(
        [sys.executable, "-c", PIPELINE_PROBE, str(config_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("PROBE "))
    seen = json.loads(line.removeprefix("PROBE "))
    assert seen == {
        "active_session": False,
        "active_context": False,
        "java_children": [],
        "after_run": False,
        "later_corpus": True,
    }


def test_scope_never_stops_a_session_it_did_not_start(spark) -> None:
    scope = SparkScope()
    scope.before_stage(uses_spark=True)
    scope.before_stage(uses_spark=False)
    scope.close()
    assert spark.range(3).count() == 3

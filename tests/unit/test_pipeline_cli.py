"""`serendipity pipeline run` with --stages and --set, on the world stage (fast, no engines)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import yaml
from typer.testing import CliRunner

from serendipity.app.cli import app
from serendipity.config import load_config


def _config(repo_root: Path, tmp_path: Path) -> Path:
    data = yaml.safe_load((repo_root / "configs" / "test.yaml").read_text())
    data.update(dataset_dir=str(tmp_path / "dataset"), work_dir=str(tmp_path / "work"))
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_set_overrides_reach_the_stage_and_are_recorded(repo_root: Path, tmp_path: Path) -> None:
    path = _config(repo_root, tmp_path)
    settings = ["world.items=80", "world.users=30", "world.interactions=600", "world.media=none"]
    arguments = ["pipeline", "run", "--config", str(path), "--stages", "world"]
    result = CliRunner().invoke(app, [*arguments, *(f"--set={s}" for s in settings)])
    assert result.exit_code == 0, result.output
    assert pq.read_metadata(tmp_path / "dataset" / "items.parquet").num_rows == 80
    effective = load_config(tmp_path / "work" / "_stages" / "effective-config.yaml")
    assert effective.world is not None and effective.world.items == 80 and effective.world.media == "none"
    marker = json.loads((tmp_path / "work" / "_stages" / "world.json").read_text())
    assert marker["seconds"] > 0

    again = CliRunner().invoke(app, [*arguments, *(f"--set={s}" for s in settings)])
    assert again.exit_code == 0 and "skipped" in again.output  # same settings: current

    changed = CliRunner().invoke(
        app, [*arguments, "--set", "world.items=90", *(f"--set={s}" for s in settings[1:])]
    )
    assert changed.exit_code == 0, changed.output
    assert pq.read_metadata(tmp_path / "dataset" / "items.parquet").num_rows == 90


def test_bad_set_and_unknown_key_are_clear_errors(repo_root: Path, tmp_path: Path) -> None:
    path = _config(repo_root, tmp_path)
    malformed = CliRunner().invoke(app, ["pipeline", "run", "--config", str(path), "--set", "mllm.max_steps"])
    assert malformed.exit_code == 2 and "KEY=VALUE" in malformed.output
    unknown = CliRunner().invoke(app, ["pipeline", "run", "--config", str(path), "--set", "mllm.max_stepz=3"])
    assert unknown.exit_code == 2 and "max_stepz" in unknown.output


def test_jobs_run_help_names_the_stage_tables_spark_jobs() -> None:
    """The help is written out (it must not import every job); the stage table is the truth."""
    from serendipity.app.commands.jobs import SPARK_JOBS_HELP
    from serendipity.app.stages import spark_job_names

    assert f"one of: {', '.join(spark_job_names())}" == SPARK_JOBS_HELP


def test_the_command_line_imports_no_job() -> None:
    """`serendipity --help` stays fast: the CLI imports the stage table and the jobs only in a command."""
    import subprocess
    import sys

    probe = "import json, sys, serendipity.app.cli; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout))
    assert not {name.split(".")[0] for name in loaded} & {"spark_jobs", "ray_jobs", "features", "serving"}
    assert "serendipity.app.stages" not in loaded


def test_json_logs_leave_only_json_lines_on_stderr(repo_root: Path, tmp_path: Path) -> None:
    """A real `serendipity --log-format json pipeline run` (the world stage): every stderr line is a JSON
    object, among them the stage events with their duration."""
    import os
    import subprocess
    import sys

    path = _config(repo_root, tmp_path)
    settings = ["world.items=60", "world.users=20", "world.interactions=300", "world.media=none"]
    command = [sys.executable, "-m", "serendipity.app.cli", "--log-format", "json", "pipeline", "run"]
    command += ["--config", str(path), "--stages", "world", *(f"--set={s}" for s in settings)]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SERENDIPITY_")}
    done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    documents = [json.loads(line) for line in lines]  # fails on the first line that is not JSON
    assert all({"ts", "level", "logger", "message"} <= set(document) for document in documents)
    events = {document["message"]: document for document in documents if document.get("stage") == "world"}
    assert set(events) == {"stage started", "stage finished"}
    assert events["stage finished"]["duration_s"] > 0

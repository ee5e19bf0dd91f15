"""One writer per work dir: a second run fails at once naming the holder; a dead holder's lock is taken
over; a stage's input fingerprint is taken before it runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from serendipity.app import pipeline
from serendipity.app.pipeline import Stage, is_current, run_pipeline
from serendipity.app.stages import Engine, default_stages
from serendipity.config import PipelineConfig
from serendipity.worklock import LOCK_FILE, WorkDirBusyError, read_holder, work_dir_lock

HOLD = """
import sys
from serendipity.worklock import work_dir_lock
with work_dir_lock(sys.argv[1], "pipeline run of 'other'"):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def other_holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``tmp_path / "work"`` until its stdin closes (or it is killed)."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "work")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    yield process
    process.kill()
    process.wait()


def test_second_writer_fails_at_once_naming_the_holder(
    other_holder: subprocess.Popen[str], tmp_path: Path
) -> None:
    started = time.monotonic()
    with pytest.raises(WorkDirBusyError) as refused, work_dir_lock(tmp_path / "work", "second run"):
        pytest.fail("a second writer got the work dir")
    assert time.monotonic() - started < 5
    message = str(refused.value)
    holder = read_holder(tmp_path / "work")
    assert holder is not None and holder.pid == other_holder.pid
    for part in (f"pid {other_holder.pid}", f"host {socket.gethostname()}", holder.started, "'other'"):
        assert part in message


def test_lock_of_a_dead_process_is_taken_over(other_holder: subprocess.Popen[str], tmp_path: Path) -> None:
    other_holder.send_signal(signal.SIGKILL)  # dies holding the lock; its holder record stays behind
    other_holder.wait()
    assert read_holder(tmp_path / "work").pid == other_holder.pid
    with work_dir_lock(tmp_path / "work", "next run"):
        holder = read_holder(tmp_path / "work")
        assert holder is not None and holder.pid == os.getpid() and holder.purpose == "next run"


def test_stale_record_without_a_lock_is_taken_over(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    dead = {"pid": 2**22 + 7, "host": socket.gethostname(), "started": "2020-01-01T00:00:00+00:00"}
    (work / LOCK_FILE).write_text(json.dumps({**dead, "purpose": "crashed run"}))
    with work_dir_lock(work, "new run"):
        assert read_holder(work).pid == os.getpid()
    assert read_holder(work) is None  # released: nobody is named any more


def test_holds_nest_in_one_process(tmp_path: Path) -> None:
    with work_dir_lock(tmp_path / "work", "pipeline run"), work_dir_lock(tmp_path / "work", "a job's run"):
        assert read_holder(tmp_path / "work").purpose == "pipeline run"
    probe = subprocess.run(
        [sys.executable, "-c", HOLD, str(tmp_path / "work")], input="", capture_output=True, text=True
    )
    assert probe.returncode == 0 and probe.stdout.strip() == "held"  # released at the end


def _config(tmp_path: Path) -> PipelineConfig:
    return PipelineConfig(name="guarded", dataset_dir=tmp_path / "dataset", work_dir=tmp_path / "work")


def _copy_stage(name: str, rewrite_input: bool) -> Stage:
    def run(config: PipelineConfig) -> None:
        source = config.dataset_dir / f"{name}.txt"
        (config.work_dir / f"{name}.out").write_text(source.read_text())
        if rewrite_input:  # another writer changes the input while the stage runs
            source.write_text("rewritten during the run, longer than before")

    return Stage(
        name,
        "copy an input",
        run,
        inputs=lambda c: [c.dataset_dir / f"{name}.txt"],
        outputs=lambda c: [c.work_dir / f"{name}.out"],
    )


def test_input_rewritten_during_a_stage_is_not_recorded_as_current(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path)
    config.dataset_dir.mkdir()
    config.work_dir.mkdir()
    stages = [_copy_stage("steady", rewrite_input=False), _copy_stage("rewritten", rewrite_input=True)]
    for stage in stages:
        (config.dataset_dir / f"{stage.name}.txt").write_text("original")
    monkeypatch.setattr(pipeline, "default_stages", lambda: stages)
    assert [r.status for r in run_pipeline(config)] == ["ran", "ran"]
    assert is_current(stages[0], config) and not is_current(stages[1], config)
    assert [r.status for r in run_pipeline(config)] == ["skipped", "ran"]


def test_pipeline_refuses_a_held_work_dir_before_any_stage(
    other_holder: subprocess.Popen[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path)
    config.dataset_dir.mkdir()
    (config.dataset_dir / "steady.txt").write_text("original")
    monkeypatch.setattr(pipeline, "default_stages", lambda: [_copy_stage("steady", rewrite_input=False)])
    with pytest.raises(WorkDirBusyError, match=f"pid {other_holder.pid}"):
        run_pipeline(config)
    assert not (config.work_dir / "steady.out").exists()
    assert not (config.work_dir / "_stages").exists()


JOB_STAGES = [stage for stage in default_stages() if stage.engine in (Engine.SPARK, Engine.RAY)]


@pytest.mark.parametrize("stage", JOB_STAGES, ids=[stage.job_module for stage in JOB_STAGES])
def test_every_job_refuses_a_work_dir_another_run_holds(
    stage: Stage, other_holder: subprocess.Popen[str], tmp_path: Path
) -> None:
    """Run standalone (spark-submit, ray job submit, `serendipity jobs run`), a job holds its work dir too."""
    with pytest.raises(WorkDirBusyError, match=f"pid {other_holder.pid}"):
        stage.run(_config(tmp_path))


SHARE = """
import sys
from serendipity.worklock import work_dir_lock
with work_dir_lock(sys.argv[1], "a job", shared=True):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_jobs_share_a_work_dir_but_never_with_a_pipeline_run(tmp_path: Path) -> None:
    job = subprocess.Popen(
        [sys.executable, "-c", SHARE, str(tmp_path / "work")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert job.stdout is not None and job.stdout.readline().strip() == "held"
        with work_dir_lock(tmp_path / "work", "a second job", shared=True):
            pass  # jobs side by side, as a cluster scheduler runs them
        with pytest.raises(WorkDirBusyError, match="running jobs"), work_dir_lock(tmp_path / "work", "run"):
            pytest.fail("a pipeline run got a work dir that a job holds")
    finally:
        job.kill()
        job.wait()

"""Ray Data batch inference on the real chain output (mined corpus + a briefly fine-tuned tiny model,
the session's shared fine-tuning run's)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import PublishedFinetune

from serendipity.config import PipelineConfig
from serendipity.inference import InferenceStore
from serendipity.io import write_parquet_atomic
from serendipity.layout import WorkLayout
from serendipity.schema import ITEMS_FILE, SERENDIPITY_SCHEMA, level_column
from serendipity.tree import ClusterTree

pytestmark = pytest.mark.slow


CHAIN_OUTPUTS = ("validated", "tree", "sft", "pairs", "prior", "corpus")


def copy_flattened(source: Path, target: Path) -> None:
    """Copy a work dir's tree, turning Spark's Parquet directories into single files."""
    for path in sorted(source.rglob("*")):
        destination = target / path.relative_to(source)
        if path.is_dir() and path.suffix == ".parquet":
            write_parquet_atomic(pq.read_table(path), destination)
        elif path.is_file() and not any(p.suffix == ".parquet" and p.is_dir() for p in path.parents):
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)


@pytest.fixture(scope="session")
def tuned(mined: PipelineConfig, published_finetune: PublishedFinetune, ray_local) -> PipelineConfig:
    """The chain output in a work dir of its own, with the model the session's shared fine-tuning run
    (4 steps on two Ray Train workers) published, and that run's summary (what inference serves)."""
    # A fixed place, so the modules importing this fixture share one copy.
    work_dir = mined.work_dir.parent / "infer-tuned"
    own, published = WorkLayout(work_dir), WorkLayout(published_finetune.published)
    if not own.latest_model_pointer.is_file():
        for name in CHAIN_OUTPUTS:
            if (mined.work_dir / name).exists():
                copy_flattened(mined.work_dir / name, work_dir / name)
        own.finetune_summary_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(published.finetune_summary_path, own.finetune_summary_path)
        shutil.copytree(published.models_dir, own.models_dir, symlinks=True)
    return mined.model_copy(update={"work_dir": work_dir, "mllm": published_finetune.config.mllm})


def isolated_work(config: PipelineConfig, work_dir: Path, **inference: object) -> PipelineConfig:
    """A work dir of its own: copies of the catalog and corpus, the published model linked."""
    shared, own = WorkLayout.of(config), WorkLayout(work_dir)
    for name in ("validated", "tree", "corpus"):
        if (shared.work_dir / name).exists():
            shutil.copytree(shared.work_dir / name, work_dir / name)
    own.models_dir.symlink_to(shared.models_dir, target_is_directory=True)
    settings = config.inference.model_copy(update={"batch_size": 8, "top_k": 2, **inference})
    return config.model_copy(update={"work_dir": work_dir, "inference": settings})


def corpus_ids(config: PipelineConfig) -> set[int]:
    return set(pq.read_table(WorkLayout.of(config).corpus_path).column("item_id").to_pylist())


def read_output(config: PipelineConfig) -> pd.DataFrame:
    return pq.read_table(WorkLayout.of(config).serendipity_path).to_pandas()


def read_errors(config: PipelineConfig) -> pd.DataFrame:
    return pq.read_table(WorkLayout.of(config).inference_errors_path).to_pandas()


def edit_items(config: PipelineConfig, edits: dict[int, dict[str, object]]) -> None:
    path = WorkLayout.of(config).catalog_dir() / ITEMS_FILE
    table = pq.read_table(path)
    items = table.to_pandas()
    for item_id, values in edits.items():
        for column, value in values.items():
            items.loc[items["item_id"] == item_id, column] = value
    write_parquet_atomic(pa.Table.from_pandas(items, schema=table.schema, preserve_index=False), path)


def test_inference_output_is_the_feast_source_and_runs_incrementally(tuned, tmp_path) -> None:
    from ray_jobs import infer
    from serendipity.mllm.data import load_tree

    config = isolated_work(tuned, tmp_path / "work")
    layout, corpus = WorkLayout.of(config), corpus_ids(tuned)
    first = infer.run(config)
    output, errors = read_output(config), read_errors(config)
    assert pq.read_schema(layout.serendipity_path).remove_metadata() == SERENDIPITY_SCHEMA
    assert output["item_id"].is_unique
    assert set(output["item_id"]) | set(errors["item_id"]) == corpus
    assert not set(output["item_id"]) & set(errors["item_id"])
    assert first.tally.inferred == len(corpus) and first.output_rows == len(output) > 0
    assert (output["model_version"] == first.model_version).all()
    assert not output["media_fallback"].any()

    tree: ClusterTree = load_tree(layout)
    level = config.mining.level
    own = (
        pq.read_table(layout.catalog_dir() / ITEMS_FILE).to_pandas().set_index("item_id")[level_column(level)]
    )
    for row in output.itertuples():
        siblings = set(tree.siblings(int(own[row.item_id])))
        assert row.serendipitous_cluster in siblings, row
        assert row.alternatives[0] == row.serendipitous_cluster
        assert len(row.alternatives) == len(row.alternative_scores) <= config.inference.top_k
        assert set(row.alternatives) <= siblings
        assert row.serendipitous_description == tree.description(row.serendipitous_cluster)

    again = infer.run(config)
    assert again.to_infer == 0
    pd.testing.assert_frame_equal(read_output(config), output)

    retitled, broken = sorted(output["item_id"])[:2]
    edit_items(config, {retitled: {"title": "a changed title"}, broken: {"video_path": "media/missing.mp4"}})
    changed = infer.run(config)
    assert changed.to_infer == 2 and changed.tally.media_fallback == 1
    after = read_output(config).set_index("item_id")
    assert len(after) == len(output) and bool(after.loc[broken, "media_fallback"])
    newer = after.loc[[retitled, broken], "event_timestamp"]
    assert (newer > output["event_timestamp"].max()).all()
    untouched = output.set_index("item_id").drop(index=[retitled, broken])
    pd.testing.assert_frame_equal(after.drop(index=[retitled, broken]), untouched)


def test_delta_only_infers_the_delta_and_reports_unknown_items(tuned, tmp_path) -> None:
    from ray_jobs import infer

    config = isolated_work(tuned, tmp_path / "work")
    layout = WorkLayout.of(config)
    delta_ids = sorted(corpus_ids(tuned))[:3]
    unknown = 10**9
    delta = pa.table({"item_id": pa.array([*delta_ids, unknown], pa.int64())})
    write_parquet_atomic(delta, layout.corpus_delta_path)
    figures = infer.run(config, delta_only=True)
    assert figures.to_infer == 3
    assert set(read_output(config)["item_id"]) | set(read_errors(config)["item_id"]) == {*delta_ids, unknown}
    reason = read_errors(config).set_index("item_id").loc[unknown, "reason"]
    assert "not in" in reason and ITEMS_FILE in reason


def _wait_for(predicate, process: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"the job ended (rc {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _job(config_path: Path, repo_root: Path) -> list[str]:
    return [sys.executable, "-m", "ray_jobs.infer", "--config", str(config_path), "--address", "local"]


def test_killed_run_resumes_without_reinferring_finished_batches(
    tuned, ray_local, tmp_path, repo_root
) -> None:
    """The job (its CLI, its own Ray) killed once its first part is committed; the run after it (here,
    on the session's Ray) infers only what the killed one had not committed."""
    from ray_jobs import infer

    config = isolated_work(tuned, tmp_path / "work", batch_size=4, num_actors=1)
    audit = tmp_path / "audit.tsv"
    config = config.model_copy(
        update={"inference": config.inference.model_copy(update={"audit_log": str(audit)})}
    )
    config_path = tmp_path / "infer.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    store, layout = InferenceStore.of(WorkLayout.of(config)), WorkLayout.of(config)
    env = {**os.environ, "RAY_ADDRESS": ""}
    driver = subprocess.Popen(_job(config_path, repo_root), cwd=repo_root, env=env, start_new_session=True)
    try:
        _wait_for(lambda: bool(store.pending_parts()), driver, 600, "the first part file")
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    finally:
        # the driver's private Ray (raylet, workers) shares its process group: end it with the driver
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
    assert not layout.serendipity_path.exists(), "a killed first run must leave no output visible"
    committed = len(store.done_keys())
    corpus = corpus_ids(tuned)
    assert 0 < committed < len(corpus), "the kill came too late to test resuming"

    infer.run(config)
    output, errors = read_output(config), read_errors(config)
    assert output["item_id"].is_unique
    assert set(output["item_id"]) | set(errors["item_id"]) == corpus
    inferred = Counter(int(line.split("\t")[0]) for line in audit.read_text().splitlines())
    assert set(inferred) == corpus
    repeated = sum(count - 1 for count in inferred.values())
    in_flight = config.inference.batch_size * config.inference.num_actors
    assert repeated <= in_flight, f"{repeated} repeated inferences, more than the batch in flight"
    assert not store.pending_parts()


@pytest.mark.gpu
def test_inference_on_gpu_actors(tuned, tmp_path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from ray_jobs import infer

    config = isolated_work(tuned, tmp_path / "work", num_gpus_per_actor=1.0)
    figures = infer.run(config)
    assert figures.tally.inferred == len(corpus_ids(tuned)) and figures.output_rows > 0

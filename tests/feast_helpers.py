"""Helpers of the Feast tests: private copies of a chain's work dir, shifted sources, the ``feast`` CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from reference.contract_data import job_config

from serendipity.config import PipelineConfig, load_config, save_config, with_overrides
from serendipity.io import write_parquet_atomic
from serendipity.layout import WorkLayout
from serendipity.schema import EVENT_TIMESTAMP, USER_JOIN_KEY


def copy_work(config: PipelineConfig, work_dir: Path) -> PipelineConfig:
    """The same sources in a fresh work dir (own Feast registry and online store)."""
    shutil.copytree(
        config.work_dir, work_dir, ignore=shutil.ignore_patterns("feast", "models", "retriever*", "finetune")
    )
    config_path = job_config(config, config.dataset_dir, work_dir)
    return load_config(config_path)


def inference_time(config: PipelineConfig) -> datetime:
    """When the batch inference run wrote its newest rows (the feature's event time)."""
    table = pq.read_table(WorkLayout.of(config).serendipity_path, columns=[EVENT_TIMESTAMP])
    return pd.Timestamp(pc.max(table[EVENT_TIMESTAMP]).as_py()).to_pydatetime()


def copy_serving_work(config: PipelineConfig, work_dir: Path, overrides: dict | None = None) -> Path:
    """The chain's sources, retriever and tree in a fresh work dir with no Feast state; its config path."""
    shutil.copytree(
        config.work_dir, work_dir, ignore=shutil.ignore_patterns("feast", "models", "finetune", "_stages")
    )
    copied = load_config(job_config(config, config.dataset_dir, work_dir))
    return save_config(with_overrides(copied, overrides or {}), work_dir.parent / f"{work_dir.name}.yaml")


def shift_sources(config: PipelineConfig, by: timedelta) -> None:
    """Move every Feast source row ``by`` back in time (a dataset whose logs ended long ago)."""
    layout = WorkLayout.of(config)
    for path in (layout.serendipity_path, layout.user_history_path, layout.item_meta_path):
        table = pq.read_table(path)
        column = table.schema.get_field_index(EVENT_TIMESTAMP)
        shifted = pc.subtract(table[EVENT_TIMESTAMP], pa.scalar(by, type=pa.duration("us")))
        if path.is_dir():  # a Spark job's output: one file in its place
            shutil.rmtree(path)
        write_parquet_atomic(table.set_column(column, table.schema.field(column), shifted), path)


def run_feast(repository: Path, *args: str) -> subprocess.CompletedProcess:
    """The real ``feast`` CLI of this environment on ``repository``; fails the test on a non-zero exit."""
    feast = Path(sys.executable).with_name("feast")
    done = subprocess.run(
        [str(feast), "-c", str(repository), *args], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def newest_snapshot_user(config: PipelineConfig) -> int:
    """The user of the newest user_history snapshot (within any history TTL of the data's last event)."""
    history = pq.read_table(WorkLayout.of(config).user_history_path).to_pandas()
    return int(history.sort_values(EVENT_TIMESTAMP)[USER_JOIN_KEY].iloc[-1])

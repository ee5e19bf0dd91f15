"""Helpers of the Feast tests: a private copy of a chain's sources, and when inference wrote them."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
from reference.contract_data import job_config

from serendipity.config import PipelineConfig, load_config
from serendipity.layout import WorkLayout
from serendipity.schema import EVENT_TIMESTAMP


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

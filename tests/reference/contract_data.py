"""Shared setup of the Spark mining tests: a contract dataset, a job config, the validated inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from serendipity.config import PipelineConfig, save_config, with_overrides
from serendipity.layout import WorkLayout
from serendipity.schema import (
    CLUSTERS_FILE,
    CLUSTERS_SCHEMA,
    INTERACTIONS_FILE,
    INTERACTIONS_SCHEMA,
    ITEMS_FILE,
    ITEMS_SCHEMA,
)


def write_contract_dataset(directory: Path, seed: int = 0, users: int = 60, items: int = 160) -> Path:
    """A small dataset following the contract: a 2-2-2-2 tree, sessions with gaps, ties and flags."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    rows, parents = [], [None]
    for level in range(1, 5):
        current = []
        for parent in parents:
            for _ in range(2):
                cluster_id = level * 100 + len(current)
                current.append(cluster_id)
                rows.append((cluster_id, level, parent, f"topic {cluster_id} at level {level}"))
        parents = current
    clusters = pd.DataFrame(rows, columns=["cluster_id", "level", "parent_id", "description"])
    parent_of = dict(zip(clusters["cluster_id"], clusters["parent_id"], strict=True))
    leaves = rng.choice(np.array(parents), size=items)
    paths = []
    for leaf in leaves:
        chain = [int(leaf)]
        while parent_of[chain[0]] is not None and not pd.isna(parent_of[chain[0]]):
            chain.insert(0, int(parent_of[chain[0]]))
        paths.append(chain)
    start = pd.Timestamp("2026-01-01", tz="UTC")
    catalog = pd.DataFrame(
        {
            "item_id": np.arange(1, items + 1, dtype="int64") * 7,
            "title": [f"video {i}" for i in range(items)],
            "text": None,
            "thumbnail_path": None,
            "video_path": None,
            **{f"c{level}": [path[level - 1] for path in paths] for level in range(1, 5)},
            "created_at": start,
        }
    )
    events = []
    for user in range(users):
        clock = start + pd.Timedelta(minutes=int(rng.integers(0, 600)))
        for _ in range(int(rng.integers(5, 60))):
            clock += pd.Timedelta(seconds=int(rng.choice([0, 30, 90, 600, 1799, 1800, 1801, 7200])))
            flag = rng.choice(np.array([True, False, None], dtype=object), p=[0.7, 0.1, 0.2])
            item = int(catalog["item_id"].iloc[int(rng.zipf(1.6)) % items])
            events.append((user, item, clock, float(rng.integers(0, 11)) / 10, flag, "organic"))
    logs = pd.DataFrame(events, columns=["user_id", "item_id", "ts", "satisfaction", "impression", "source"])
    for frame, schema, name in (
        (clusters, CLUSTERS_SCHEMA, CLUSTERS_FILE),
        (catalog, ITEMS_SCHEMA, ITEMS_FILE),
        (logs, INTERACTIONS_SCHEMA, INTERACTIONS_FILE),
    ):
        pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), directory / name)
    return directory


def job_pipeline_config(base: PipelineConfig, dataset_dir: Path, work_dir: Path) -> PipelineConfig:
    """A config like ``base`` with its own dataset and work dirs (the work dir is created)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    return with_overrides(base, {"dataset_dir": str(dataset_dir), "work_dir": str(work_dir)})


def job_config(base: PipelineConfig, dataset_dir: Path, work_dir: Path) -> Path:
    """``job_pipeline_config`` as a YAML file beside the work dir, for what takes ``--config PATH``."""
    config = job_pipeline_config(base, dataset_dir, work_dir)
    return save_config(config, work_dir.parent / f"{work_dir.name}.yaml")


def prepare_validated(config: PipelineConfig) -> WorkLayout:
    """Run the validate job on the config's dataset."""
    from spark_jobs import validate

    validate.run(config)
    return WorkLayout.of(config)


def read_table(path: Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()

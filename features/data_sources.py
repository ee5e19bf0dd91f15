"""Feast batch sources: the Parquet tables the pipeline writes under its work_dir.

Source paths come from the pipeline config, never from committed absolute paths. When the repo is
loaded by the ``feast`` CLI, the config is read from ``$SERENDIPITY_CONFIG`` (default:
``configs/demo.yaml`` beside this repository) and ``$SERENDIPITY_WORK_DIR``, when set, overrides
its work_dir. ``$SERENDIPITY_OFFLINE_STORE=spark`` makes Spark sources for the Spark offline store.

Under the ``feast`` CLI, ``refuse_other_state`` stops a command whose registry or online store is not the
one that config keeps (and the endpoint reads): ``feast -c features`` with the embedded feature_store.yaml
would otherwise write features/data/ while the endpoint reads ``<work_dir>/feast/data/``.
"""

from __future__ import annotations

import os
from pathlib import Path

from feast import FileSource
from feast.data_source import DataSource

from serendipity.config import PipelineConfig, load_config
from serendipity.layout import WorkLayout
from serendipity.schema import EVENT_TIMESTAMP, ITEM_META_VIEW, ITEM_SERENDIPITY_VIEW, USER_HISTORY_VIEW

CONFIG_ENV = "SERENDIPITY_CONFIG"
WORK_DIR_ENV = "SERENDIPITY_WORK_DIR"
OFFLINE_STORE_ENV = "SERENDIPITY_OFFLINE_STORE"
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"


def config_from_env() -> PipelineConfig:
    """The pipeline config the ``feast`` CLI loads this repository with (see the module docstring)."""
    config = load_config(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    work_dir = os.environ.get(WORK_DIR_ENV)
    if work_dir:
        config = config.model_copy(update={"work_dir": Path(work_dir).expanduser().resolve()})
    return config


class OtherFeastState(RuntimeError):
    """The ``feast`` CLI was pointed at a registry or online store the pipeline config does not use."""


def refuse_other_state(config: PipelineConfig) -> None:
    """Inside a ``feast`` CLI command, raise ``OtherFeastState`` unless the repository and
    feature_store.yaml it was given resolve to the registry and online store of ``config``; outside the
    CLI (the library builds these definitions itself) do nothing. When they agree, the folders of the
    registry and online-store files are made, as the library makes them."""
    import click

    from serendipity.feature_store import FeastStateLocation, state_location

    context = click.get_current_context(silent=True)
    cli = context.find_root().obj if context is not None else None
    if not isinstance(cli, dict) or "CHDIR" not in cli or "FS_YAML_FILE" not in cli:
        return
    given = FeastStateLocation.of(Path(cli["CHDIR"]).resolve(), Path(cli["FS_YAML_FILE"]).resolve())
    kept = state_location(config)
    if given != kept:
        feast_dir = WorkLayout.of(config).feast_dir
        raise OtherFeastState(
            f"this feast command would use registry {given.registry} and online store "
            f"{given.online_store}, but pipeline config {config.name!r} (${CONFIG_ENV}) keeps them at "
            f"{kept.registry} and {kept.online_store}, where the endpoint reads. Run "
            f"`serendipity features apply --config <that config>` once, then `feast -c {feast_dir} ...`: "
            "that repository has this config's feature_store.yaml and state."
        )
    for local in (kept.registry, kept.online_store):
        if Path(local).is_absolute():  # as ServingFeatures does: Feast creates no folder for its files
            Path(local).parent.mkdir(parents=True, exist_ok=True)


def offline_store_from_env() -> str:
    return os.environ.get(OFFLINE_STORE_ENV, "file")


def _parquet_source(name: str, path: Path, offline_store: str) -> DataSource:
    if offline_store == "spark":
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

        return SparkSource(name=name, path=str(path), file_format="parquet", timestamp_field=EVENT_TIMESTAMP)
    return FileSource(name=name, path=str(path), timestamp_field=EVENT_TIMESTAMP)


def serendipity_source(layout: WorkLayout, offline_store: str = "file") -> DataSource:
    """Batch-inference output (SERENDIPITY_SCHEMA)."""
    return _parquet_source(f"{ITEM_SERENDIPITY_VIEW}_source", layout.serendipity_path, offline_store)


def user_history_source(layout: WorkLayout, offline_store: str = "file") -> DataSource:
    """Per-user snapshots of recent engaged items (USER_HISTORY_SCHEMA), from spark_jobs/user_history.py."""
    return _parquet_source(f"{USER_HISTORY_VIEW}_source", layout.user_history_path, offline_store)


def item_meta_source(layout: WorkLayout, offline_store: str = "file") -> DataSource:
    """Per-item cluster path and popularity snapshots (ITEM_META_SCHEMA), from spark_jobs/user_history.py."""
    return _parquet_source(f"{ITEM_META_VIEW}_source", layout.item_meta_path, offline_store)

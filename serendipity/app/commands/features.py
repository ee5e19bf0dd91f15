"""`serendipity features` commands: Feast apply, materialize and online reads for a pipeline config."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from serendipity.feature_store import ServingFeatures

app = typer.Typer(no_args_is_help=True, help="Feast: apply, materialize, read.")

CONFIG_OPTION = typer.Option(..., "--config", help="pipeline YAML (configs/demo.yaml, ...)")
YAML_OPTION = typer.Option(
    None, "--feature-store-yaml", help="alternative feature_store.yaml (default: features.feature_store_yaml)"
)


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"expected an ISO-8601 time, got {value!r}", param_hint=name) from None


def _features(config_path: Path, feature_store_yaml: Path | None) -> ServingFeatures:
    from serendipity.config import load_config
    from serendipity.feature_store import ServingFeatures

    return ServingFeatures(load_config(config_path), feature_store_yaml)


@app.command("apply")
def apply(config: Path = CONFIG_OPTION, feature_store_yaml: Path | None = YAML_OPTION) -> None:
    """Register entities, feature views and the serving FeatureService (like `feast apply`)."""
    from features.definitions import apply_definitions

    features = _features(config, feature_store_yaml)
    apply_definitions(features)
    repository = features.write_feast_repository()
    typer.echo(f"applied Feast repository {features.yaml_path} for work_dir {features.config.work_dir}")
    typer.echo(f"Feast CLI on the same registry and online store: feast -c {repository} <command>")


@app.command("materialize")
def materialize(
    config: Path = CONFIG_OPTION,
    end: str | None = typer.Option(None, "--end", help="ISO time; default now (UTC)"),
    start: str | None = typer.Option(None, "--start", help="ISO time: materialise [start, end] instead"),
    feature_store_yaml: Path | None = YAML_OPTION,
    full: bool = typer.Option(False, "--full", help="reload every view's whole TTL window up to END"),
) -> None:
    """Load new source rows into the online store (like `feast materialize-incremental END`).

    An online store that lost its data (or is a fresh one) is noticed and loaded in full again. A view
    never materialised loads its data's last ttl (counted back from its newest event, not from today);
    data older than a ttl is reported.
    """
    from datetime import UTC

    end_time = _parse_time(end, "--end") or datetime.now(UTC)
    start_time = _parse_time(start, "--start")
    features = _features(config, feature_store_yaml)
    if start_time is None:
        reloaded = features.materialize_incremental(end_time, full=full)
    else:
        features.materialize(start_time, end_time)
        reloaded = False
    scope = "full window (online store was empty or --full)" if reloaded else "new rows"
    typer.echo(f"materialised {scope} up to {end_time.isoformat()}")
    for problem in features.store_state().problems:
        typer.secho(f"NOT SERVABLE: {problem}", fg=typer.colors.RED, err=True)


@app.command("online")
def online(
    config: Path = CONFIG_OPTION,
    item: list[int] = typer.Option(..., "--item", help="context item id (repeatable)"),
    user: int = typer.Option(0, "--user", help="user id"),
    feature_store_yaml: Path | None = YAML_OPTION,
) -> None:
    """Print the serving features of context items for one user."""
    frame = _features(config, feature_store_yaml).online_features(item, [user] * len(item))
    typer.echo(frame.to_string(index=False))

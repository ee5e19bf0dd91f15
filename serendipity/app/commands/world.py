"""`serendipity world` commands."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, help="Generate the synthetic short-video world.")


def _parse_branching(value: str) -> tuple[int, int, int, int]:
    try:
        parts = tuple(int(part) for part in value.split(","))
    except ValueError:
        raise typer.BadParameter(f"expected 4 comma-separated integers, got {value!r}") from None
    if len(parts) != 4 or any(part < 1 for part in parts):
        raise typer.BadParameter(f"expected 4 positive comma-separated integers, got {value!r}")
    return parts  # type: ignore[return-value]


@app.command("generate")
def generate(
    out: Path = typer.Option(..., "--out", help="dataset directory to write (replaced atomically)"),
    items: int = typer.Option(2000, "--items", min=10),
    users: int = typer.Option(500, "--users", min=1),
    interactions: int = typer.Option(100_000, "--interactions", min=1),
    seed: int = typer.Option(0, "--seed"),
    media: str = typer.Option("all", "--media", help="all | popular | none"),
    branching: str = typer.Option("3,3,3,2", "--branching", help="children per level, e.g. 3,3,4,2"),
    days: int = typer.Option(30, "--days", min=1),
    media_workers: int = typer.Option(1, "--media-workers", min=1, help="processes encoding media"),
) -> None:
    """Write clusters, items, interactions and media (plus the hidden state under _world/)."""
    from pydantic import ValidationError
    from rich.console import Console
    from rich.table import Table

    from serendipity.config import WorldConfig
    from serendipity.world import generate_world

    try:
        config = WorldConfig(
            items=items,
            users=users,
            interactions=interactions,
            seed=seed,
            media=media,  # type: ignore[arg-type]
            branching=_parse_branching(branching),
            days=days,
            media_workers=media_workers,
        )
    except ValidationError as error:
        raise typer.BadParameter(str(error)) from None
    try:
        summary = generate_world(out.expanduser().resolve(), config)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None

    table = Table(title=f"world written to {summary.out_dir}")
    table.add_column("what")
    table.add_column("value", justify="right")
    for label, value in (
        ("clusters", summary.clusters),
        ("items (new during the period)", f"{summary.items} ({summary.new_items})"),
        ("items with media", summary.media_items),
        ("users", summary.users),
        ("interactions", summary.interactions),
        ("sessions", summary.sessions),
    ):
        table.add_row(label, str(value))
    for relation, share in summary.relation_share.items():
        mean = summary.relation_satisfaction.get(relation)
        shown = f"{share:.1%}" + (f", mean satisfaction {mean:.3f}" if mean is not None else "")
        table.add_row(f"transitions: {relation}", shown)
    table.add_row("seconds", ", ".join(f"{k} {v:.1f}" for k, v in summary.seconds.items()))
    Console().print(table)

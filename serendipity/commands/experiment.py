"""`serendipity experiment` commands: the paper's offline experiments."""

from __future__ import annotations

from pathlib import Path

import typer

from serendipity.commands.report import replay

app = typer.Typer(no_args_is_help=True, help="experiment commands")

ALL_EXPERIMENTS = "modality,frames,thumbnail"


def _parse_seeds(value: str) -> list[int]:
    try:
        seeds = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise typer.BadParameter(f"expected distinct comma-separated integers, got {value!r}")
    return seeds


@app.command("ablate")
def ablate(
    config: Path = typer.Option(
        ..., "--config", "-c", help="pipeline YAML whose Spark chain (curate) has run"
    ),
    seeds: str = typer.Option("0", "--seeds", help="comma-separated seeds, e.g. 0,1,2"),
    max_steps: int = typer.Option(None, "--max-steps", min=1, help="overrides mllm.max_steps"),
    eval_every: int = typer.Option(None, "--eval-every", min=1, help="overrides mllm.eval_every"),
    experiments: str = typer.Option(ALL_EXPERIMENTS, "--experiments", help=f"subset of {ALL_EXPERIMENTS}"),
    fresh: bool = typer.Option(False, "--fresh", help="delete earlier ablation runs and base models first"),
) -> None:
    """Fine-tune every arm x seed from the same seeded base model; write the table, curves and findings."""
    import logging
    import shutil
    import sys

    import ray
    from rich.console import Console
    from rich.table import Table

    from serendipity.config import ConfigError, load_config
    from serendipity.mllm.ablation import (
        AblationError,
        ablation_dir,
        require_curated,
        run_ablation,
        select_experiments,
    )
    from serendipity.mllm.ablation_report import METRICS, format_cell

    console = Console(width=None if sys.stdout.isatty() else 150)
    seed_list = _parse_seeds(seeds)
    try:
        pipeline = load_config(config)
        chosen = select_experiments([name.strip() for name in experiments.split(",") if name.strip()])
    except (ConfigError, AblationError) as error:
        raise typer.BadParameter(str(error)) from None
    try:
        require_curated(pipeline, config)
    except AblationError as error:
        console.print(f"[red]error:[/] {error}", soft_wrap=True)
        raise typer.Exit(1) from None
    if fresh:
        shutil.rmtree(ablation_dir(pipeline), ignore_errors=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    def arm_done(arm: str, seed: int, summary: dict) -> None:
        final = {"match_rate": float("nan"), "recall": float("nan"), **summary.get("final_metrics", {})}
        console.print(
            f"[green]done[/] {arm} seed {seed}: step {summary['steps']}, "
            f"match rate {final['match_rate']:.3f}, recall {final['recall']:.3f}"
        )

    if not ray.is_initialized():
        ray.init(configure_logging=False, include_dashboard=False, log_to_driver=False)
    try:
        report = run_ablation(
            pipeline,
            experiments=chosen,
            seeds=seed_list,
            max_steps=max_steps,
            eval_every=eval_every,
            on_arm_done=arm_done,
            config_path=config,
        )
    except AblationError as error:
        console.print(f"[red]error:[/] {error}", soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        ray.shutdown()

    table = Table(title=f"ablation (mean ± 95% CI over seeds {seed_list})")
    for column in (
        "experiment",
        "arm",
        "seeds",
        "final match",
        "best match",
        "final recall",
        "best recall",
        "steps@90%",
    ):
        table.add_column(column)
    for row in report.table.itertuples(index=False):
        cells = [
            format_cell(
                getattr(row, f"{m}_mean"), getattr(row, f"{m}_ci95"), 0 if m.startswith("steps") else 3
            )
            for m in METRICS
        ]
        table.add_row(row.experiment, row.arm, "-" if row.seeds != row.seeds else str(int(row.seeds)), *cells)
    console.print(table)
    for finding in report.findings:
        colour = {"holds": "green", "does not hold": "red"}.get(finding["verdict"], "yellow")
        console.print(f"[{colour}]{finding['verdict']}[/]: {finding['finding']} — {finding['evidence']}")
    for name, path in report.paths.items():
        console.print(f"{name}: {path}")


@app.command("live")
def live(
    config: Path = typer.Option(..., "--config", "-c", help="pipeline YAML whose serving chain has run"),
    seeds: str | None = typer.Option(None, "--seeds", help="comma-separated seeds (default eval.seeds)"),
    days: int | None = typer.Option(None, "--days", min=1, help="overrides eval.days"),
    users_per_arm: int | None = typer.Option(
        None, "--users-per-arm", min=1, help="overrides eval.users_per_arm"
    ),
) -> None:
    """The simulated live experiment: exploitation, exploration, bandit and MLLM arms on disjoint users."""
    from ray_jobs import evaluate

    argv = ["--config", str(config)]
    if seeds is not None:
        argv += ["--seeds", ",".join(str(seed) for seed in _parse_seeds(seeds))]
    if days is not None:
        argv += ["--days", str(days)]
    if users_per_arm is not None:
        argv += ["--users-per-arm", str(users_per_arm)]
    paths = evaluate.main(argv)
    typer.echo(f"experiment: {paths['experiment']}")


app.command("replay")(replay)

"""`serendipity experiment` commands: the paper's offline experiments."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from serendipity.app.commands.report import replay

if TYPE_CHECKING:
    from rich.console import Console

    from serendipity.config import PipelineConfig
    from serendipity.mllm.ablation import Experiment
    from serendipity.mllm.ablation_report import AblationReport
    from serendipity.mllm.results import FinetuneSummary

app = typer.Typer(no_args_is_help=True, help="experiment commands")

ALL_EXPERIMENTS = "modality,frames,thumbnail"
ABLATION_COLUMNS = (
    "experiment",
    "arm",
    "seeds",
    "final match",
    "best match",
    "final recall",
    "best recall",
    "steps@90%",
)


def _seeds_option(value: str) -> list[int]:
    from serendipity.config import parse_seeds

    try:
        return parse_seeds(value)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


def _ablation_inputs(
    config: Path, experiments: str, console: Console
) -> tuple[PipelineConfig, list[Experiment]]:
    """The pipeline config and the chosen experiments; exits when the curated set is missing."""
    from serendipity.config import ConfigError, load_config
    from serendipity.mllm.ablation import AblationError, require_curated, select_experiments

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
    return pipeline, chosen


def _print_arm_done(console: Console) -> Callable[[str, int, FinetuneSummary], None]:
    def arm_done(arm: str, seed: int, summary: FinetuneSummary) -> None:
        final = {"match_rate": float("nan"), "recall": float("nan"), **(summary.final_metrics or {})}
        console.print(
            f"[green]done[/] {arm} seed {seed}: step {summary.steps}, "
            f"match rate {final['match_rate']:.3f}, recall {final['recall']:.3f}"
        )

    return arm_done


def _on_local_ray(console: Console, ablation: Callable[[], AblationReport]) -> AblationReport:
    """``ablation()`` in a local Ray session; exits when the ablation cannot run."""
    import ray

    from serendipity.mllm.ablation import AblationError

    if not ray.is_initialized():
        ray.init(configure_logging=False, include_dashboard=False, log_to_driver=False)
    try:
        return ablation()
    except AblationError as error:
        console.print(f"[red]error:[/] {error}", soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        ray.shutdown()


def _print_ablation(console: Console, report: AblationReport, seeds: list[int]) -> None:
    from rich.table import Table

    from serendipity.mllm.ablation_report import METRICS, format_cell

    table = Table(title=f"ablation (mean ± 95% CI over seeds {seeds})")
    for column in ABLATION_COLUMNS:
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
    import shutil
    import sys

    from rich.console import Console

    from serendipity.mllm.ablation import ablation_dir, run_ablation

    console = Console(width=None if sys.stdout.isatty() else 150)
    seed_list = _seeds_option(seeds)
    pipeline, chosen = _ablation_inputs(config, experiments, console)
    if fresh:
        shutil.rmtree(ablation_dir(pipeline), ignore_errors=True)
    report = _on_local_ray(
        console,
        lambda: run_ablation(
            pipeline,
            experiments=chosen,
            seeds=seed_list,
            max_steps=max_steps,
            eval_every=eval_every,
            on_arm_done=_print_arm_done(console),
            config_path=config,
        ),
    )
    _print_ablation(console, report, seed_list)


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
    from serendipity.config import load_config
    from serendipity.logs import run_logged

    pipeline = load_config(config)
    seed_list = _seeds_option(seeds) if seeds is not None else None
    paths = run_logged(
        "evaluate", lambda: evaluate.run(pipeline, seeds=seed_list, days=days, users_per_arm=users_per_arm)
    )
    typer.echo(f"experiment: {paths.experiment}")


app.command("replay")(replay)

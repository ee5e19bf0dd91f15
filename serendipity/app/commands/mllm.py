"""`serendipity mllm` commands: build the tiny default model, fine-tune it, evaluate it."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, help="mllm commands")


@app.command("init")
def init(
    out: Path = typer.Option(
        None, "--out", help="model directory to write (default: the config's mllm.model_dir)"
    ),
    dataset: Path = typer.Option(None, "--dataset", help="dataset directory whose texts train the tokenizer"),
    config: Path = typer.Option(
        None, "--config", help="pipeline YAML supplying defaults for --out/--dataset"
    ),
    architecture: str = typer.Option(
        None,
        "--architecture",
        help="llava (default), gemma3, paligemma, smolvlm, qwen2_vl, qwen2_5_vl or llava_onevision",
    ),
    image_size: int = typer.Option(32, "--image-size"),
) -> None:
    """Build the tiny default VLM (tokenizer trained on the dataset's texts) and save it."""
    from serendipity.config import load_config
    from serendipity.mllm.tiny import init_tiny_model

    pipeline = load_config(config) if config else None
    if out is None or dataset is None:
        if pipeline is None:
            raise typer.BadParameter(
                "give --out and --dataset, or --config to take them from a pipeline config"
            )
        out = out or pipeline.resolve(pipeline.mllm.model_dir)
        dataset = dataset or pipeline.dataset_dir
    arch = architecture or (pipeline.mllm.architecture if pipeline else "llava")
    path = init_tiny_model(out, dataset, architecture=arch, image_size=image_size)  # type: ignore[arg-type]
    typer.echo(f"wrote the tiny {arch} model to {path}")


@app.command("finetune")
def finetune(
    config: Path = typer.Option(..., "--config", help="pipeline YAML"),
    max_steps: int = typer.Option(None, "--max-steps", help="overrides mllm.max_steps"),
    fresh: bool = typer.Option(False, "--fresh", help="ignore existing checkpoints"),
) -> None:
    """Fine-tune with Ray Train (resumes from the last checkpoint); publish the model if the gate lets it."""
    from ray_jobs import finetune as finetune_job
    from serendipity.config import load_config
    from serendipity.logs import run_logged

    pipeline = load_config(config)
    run_logged("finetune", lambda: finetune_job.run(pipeline, max_steps=max_steps, fresh=fresh))


@app.command("evaluate")
def evaluate(
    config: Path = typer.Option(..., "--config", help="pipeline YAML"),
    model_dir: Path = typer.Option(None, "--model-dir", help="default: the latest published model"),
) -> None:
    """Match rate and recall on the held-out items, free and constrained, vs the best non-LLM guess."""
    from serendipity.config import load_config
    from serendipity.mllm.evaluation import evaluate_published

    report = evaluate_published(load_config(config), model_dir)
    typer.echo(json.dumps(report.to_json(), indent=2, default=str))

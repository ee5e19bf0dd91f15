"""The nominators judged on a pipeline's validation items, with and without the MiniLM text feature.

Loads the fine-tuned model of a work dir (the published one, or ``--model-dir``), then runs the
publish gate's judgement (``serendipity.mllm.judge``) twice: with ``mllm.text_similarity`` off and on.
Prints every nominator's recall with n (overall, warm and cold context items) and saves
``bench/results/nominators_<config name>.json``. Nothing is published or written to the work dir.
Usage: ``python -m bench.nominators --config configs/movielens.yaml``.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from devtools import REPO
from serendipity.config import load_config, with_overrides
from serendipity.io import json_safe, write_json_atomic
from serendipity.layout import WorkLayout

RESULTS = REPO / "bench" / "results"


def judged_figures(config: Any, model_dir: Path, text: bool) -> dict[str, Any]:
    from serendipity.mllm.judge import judge
    from serendipity.mllm.model import load_model

    settings = with_overrides(config, {"mllm.text_similarity": text})
    judged = judge(settings, *load_model(model_dir), None)
    figures = asdict(judged)
    figures.pop("prior")
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument(
        "--model-dir", type=Path, default=None, help="default: the work dir's published model"
    )
    args = parser.parse_args(argv)
    config = load_config(args.config)
    model_dir = args.model_dir or WorkLayout.of(config).models_dir
    load_at_start = list(os.getloadavg())
    results = {
        "config": str(args.config),
        "model_dir": str(model_dir),
        "without_text_feature": judged_figures(config, model_dir, text=False),
        "with_text_feature": judged_figures(config, model_dir, text=True),
        "load_average_at_start": load_at_start,
        "command": f"python -m bench.nominators --config {args.config}",
    }
    for name in ("without_text_feature", "with_text_feature"):
        judged = results[name]
        print(f"{name}: lambda={judged['weight']:g} mu={judged['text_weight']:g}")
        for nominator, figures in judged["nominators"].items():
            interval = f"[{figures['ci_low']:.3f}, {figures['ci_high']:.3f}]"
            print(f"  {nominator:<24} recall {figures['recall']:.3f} {interval} n={figures['items']}")
        for group, figures in judged["by_evidence"].items():
            recalls = ", ".join(f"{k} {v['recall']:.3f}" for k, v in figures.items() if isinstance(v, dict))
            print(f"  {group} (n={figures['n']}): {recalls}")
    output = RESULTS / f"nominators_{config.name}.json"
    write_json_atomic(json_safe(results), output)
    print(f"saved {output}")


if __name__ == "__main__":
    main()

"""Fine-tuning curves (loss, match rate, recall over steps) as CSV and PNG."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

CURVES_CSV = "curves.csv"
CURVES_PNG = "curves.png"


def write_curves(history: list[dict[str, float]], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``curves.csv`` and ``curves.png`` (atomically replaced) from the evaluation history."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(history).sort_values("step")
    csv_path, png_path = out_dir / CURVES_CSV, out_dir / CURVES_PNG
    tmp_csv, tmp_png = out_dir / f".{CURVES_CSV}.tmp", out_dir / f".tmp.{CURVES_PNG}"
    frame.to_csv(tmp_csv, index=False)
    tmp_csv.replace(csv_path)

    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axis.plot(frame["step"], frame["loss"], marker="o")
    loss_axis.set(xlabel="step", ylabel="training loss", title="loss")
    for column in ("match_rate", "recall", "recall_at_k"):
        if column in frame:
            metric_axis.plot(frame["step"], frame[column], marker="o", label=column)
    metric_axis.set(xlabel="step", ylabel="share of held-out items", title="match rate / recall", ylim=(0, 1))
    metric_axis.legend()
    figure.tight_layout()
    figure.savefig(tmp_png, format="png")
    plt.close(figure)
    tmp_png.replace(png_path)
    return csv_path, png_path

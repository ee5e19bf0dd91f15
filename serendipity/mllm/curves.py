"""Fine-tuning curves (loss, match rate, recall over steps) as CSV and PNG."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd

from serendipity.io import write_bytes_atomic, write_text_atomic
from serendipity.layout import CURVES_CSV

CURVES_PNG = "curves.png"


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (jobs have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png_atomic(figure: Any, path: Path) -> Path:
    """Save ``figure`` as a PNG that replaces ``path`` atomically, then close it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    pyplot().close(figure)
    return write_bytes_atomic(buffer.getvalue(), path)


def write_curves(history: list[dict[str, float]], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``curves.csv`` and ``curves.png`` (atomically replaced) from the evaluation history."""
    out_dir = Path(out_dir)
    frame = pd.DataFrame(history).sort_values("step")
    csv_path = write_text_atomic(frame.to_csv(index=False), out_dir / CURVES_CSV)

    figure, (loss_axis, metric_axis) = pyplot().subplots(1, 2, figsize=(10, 4))
    loss_axis.plot(frame["step"], frame["loss"], marker="o")
    loss_axis.set(xlabel="step", ylabel="training loss", title="loss")
    for column in ("match_rate", "recall", "recall_at_k"):
        if column in frame:
            metric_axis.plot(frame["step"], frame[column], marker="o", label=column)
    metric_axis.set(xlabel="step", ylabel="share of held-out items", title="match rate / recall", ylim=(0, 1))
    metric_axis.legend()
    figure.tight_layout()
    return csv_path, save_png_atomic(figure, out_dir / CURVES_PNG)

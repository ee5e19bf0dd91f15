from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from serendipity.app.cli import app
from serendipity.schema import DATASET_FILES, ITEMS_FILE
from serendipity.world import UserSimulator


def test_cli_generates_a_tiny_world(tmp_path: Path) -> None:
    out = tmp_path / "world"
    args = ["world", "generate", "--out", str(out), "--items", "60", "--users", "15", "--interactions", "900"]
    args += ["--seed", "2", "--media", "popular", "--branching", "2,2,3,2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "interactions" in result.output and "900" in result.output
    for name in DATASET_FILES:
        assert (out / name).is_file()
    items = pq.read_table(out / ITEMS_FILE).to_pandas()
    with_media = items["video_path"].notna()
    assert 0 < with_media.sum() < len(items)
    assert all((out / p).is_file() for p in items.loc[with_media, "video_path"])
    simulator = UserSimulator.load(out)
    assert len(simulator.cue_cluster(items["item_id"].to_numpy())) == len(items)


def test_cli_rejects_a_tree_without_siblings(tmp_path: Path) -> None:
    args = ["world", "generate", "--out", str(tmp_path / "w"), "--items", "60", "--branching", "2,2,1,2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert "third factor" in result.output
    assert not (tmp_path / "w").exists()


def test_cli_rejects_a_bad_branching_string(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["world", "generate", "--out", str(tmp_path / "w"), "--branching", "3,x"]
    )
    assert result.exit_code != 0
    assert "comma-separated" in result.output

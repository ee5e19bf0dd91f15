"""A mining job submitted with spark-submit, exactly as a cluster user runs it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cluster_helpers import SPARK_SUBMIT, spark_submit_env
from reference import mining as reference
from reference.contract_data import job_config, read_table, write_contract_dataset

from serendipity.config import PipelineConfig, load_config
from serendipity.layout import WorkLayout
from serendipity.schema import DATASET_FILES, INTERACTIONS_FILE, ITEMS_FILE


@pytest.mark.slow
def test_spark_submit_runs_the_aggregates_job(
    test_config: PipelineConfig, repo_root: Path, tmp_path: Path
) -> None:
    if not SPARK_SUBMIT.exists():
        pytest.skip(f"{SPARK_SUBMIT} is absent")
    dataset = write_contract_dataset(tmp_path / "dataset", seed=3)
    config_path = job_config(test_config, dataset, tmp_path / "work")
    config = load_config(config_path)
    layout = WorkLayout.of(config)
    layout.validated_dir.mkdir(parents=True)
    for name in DATASET_FILES:
        shutil.copy(dataset / name, layout.validated_dir / name)

    result = subprocess.run(
        [
            str(SPARK_SUBMIT),
            "--master",
            "local[2]",
            str(repo_root / "spark_jobs" / "aggregates.py"),
            "--config",
            str(config_path),
        ],
        env=spark_submit_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "serendipitous" in result.stdout

    pairs = reference.consecutive_pairs(
        read_table(layout.validated_dir / INTERACTIONS_FILE),
        read_table(layout.validated_dir / ITEMS_FILE),
        config.mining.level,
        config.mining.session_gap_minutes,
    )
    expected, _ = reference.aggregates(pairs)
    overall = read_table(layout.aggregates_overall_path).sort_values("pair_class")
    expected = expected.sort_values("pair_class")
    assert overall["pair_class"].tolist() == expected["pair_class"].tolist()
    assert overall["count"].tolist() == expected["count"].tolist()
    assert overall["mean_satisfaction"].to_numpy() == pytest.approx(expected["mean_satisfaction"].to_numpy())
    assert (layout.aggregates_per_cluster_path).is_dir()
    assert layout.job_stats_path("aggregates").exists()

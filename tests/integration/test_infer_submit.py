"""The inference job submitted as users do it: a real `ray start --head`, then `ray job submit`."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pyarrow.parquet as pq
import pytest
import yaml
from cluster_helpers import RayHead, job_output, ray_head, ray_job_submit
from test_infer import corpus_ids, isolated_work, read_errors, read_output, tuned  # noqa: F401

from serendipity.layout import WorkLayout
from serendipity.schema import SERENDIPITY_SCHEMA

pytestmark = pytest.mark.slow


@pytest.fixture
def running_head() -> Iterator[RayHead]:
    """A private Ray head on loopback (see cluster_helpers.ray_head)."""
    with ray_head() as head:
        yield head


def test_ray_job_submit_runs_inference_on_a_running_cluster(tuned, running_head, tmp_path) -> None:  # noqa: F811
    config = isolated_work(tuned, tmp_path / "work")
    config_path = tmp_path / "infer.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    result = ray_job_submit(running_head, ["python", "-m", "ray_jobs.infer", "--config", str(config_path)])
    assert result.returncode == 0, job_output(result)
    assert "succeeded" in (result.stdout + result.stderr).lower()

    layout = WorkLayout.of(config)
    assert pq.read_schema(layout.serendipity_path).remove_metadata() == SERENDIPITY_SCHEMA
    output = read_output(config)
    assert output["item_id"].is_unique
    assert set(output["item_id"]) | set(read_errors(config)["item_id"]) == corpus_ids(tuned)
    stats = json.loads(layout.job_stats_path("infer").read_text())
    assert stats["inferred"] == len(corpus_ids(tuned)) and stats["output_rows"] == len(output)

"""The offline replay on the real serving chain of the test world, and the report rendered from it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from serendipity.config import PipelineConfig, load_config
from serendipity.eval.replay import (
    METHOD_HELP,
    ReplayError,
    frequent_next_cluster,
    held_out_cases,
    run_replay,
)
from serendipity.eval.replay_results import ReplayReport
from serendipity.layout import WorkLayout
from serendipity.schema import INTERACTIONS_FILE, ITEMS_FILE, level_column

pytestmark = pytest.mark.slow


def _ts(minutes: int) -> pd.Timestamp:
    return pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(minutes=minutes)


def test_held_out_case_is_the_last_engaged_item_after_the_previous_engaged_one() -> None:
    log = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 1, 2, 2, 3],
            "item_id": [10, 11, 12, 13, 14, 20, 21, 30],
            "ts": [_ts(m) for m in (0, 1, 2, 3, 4, 0, 1, 0)],
            "satisfaction": [0.9, 0.9, 0.1, 0.8, 0.2, 0.9, 0.2, 0.9],
        }
    )
    cases, too_short = held_out_cases(log.sample(frac=1.0, random_state=0), engaged_above=0.5)
    assert too_short == 2  # users 2 and 3 have one engaged interaction each
    assert cases[["user_id", "context_item_id", "next_item_id"]].values.tolist() == [[1, 11, 13]]
    assert cases["history"].tolist() == [[10]]


def test_non_llm_baseline_ignores_the_held_out_transitions() -> None:
    cases = pd.DataFrame({"user_id": [1], "next_ts": [_ts(5)]})
    pairs = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2],
            "context_cluster": [100, 100, 100, 100],
            "next_cluster": [7, 7, 8, 8],
            "ts": [_ts(5), _ts(6), _ts(1), _ts(9)],
        }
    )
    # user 1's pairs at or after the held-out time (both towards 7) are not training data: 8 wins
    assert frequent_next_cluster(pairs, cases) == {100: 8}
    assert frequent_next_cluster(pairs, cases.assign(user_id=3)) == {100: 7}


@pytest.fixture(scope="module")
def chain_config(retrieval_chain: Path) -> PipelineConfig:
    return load_config(retrieval_chain)


@pytest.fixture(scope="module")
def replay(chain_config: PipelineConfig) -> ReplayReport:
    return run_replay(chain_config)


def test_replay_counts_follow_the_logs(chain_config: PipelineConfig, replay: ReplayReport) -> None:
    layout = WorkLayout.of(chain_config)
    log = pq.read_table(layout.validated_dir / INTERACTIONS_FILE).to_pandas()
    engaged = log[log["satisfaction"] > chain_config.engagement.satisfaction_above]
    per_user = engaged.groupby("user_id").size()
    assert replay.users_held_out == int((per_user >= 2).sum())
    excluded = replay.excluded
    assert excluded["users with fewer than two engaged interactions"] == int((per_user < 2).sum())
    all_cases = replay.subsets["all"].cases
    assert all_cases == replay.users_held_out - sum(v for k, v in excluded.items() if k.startswith("cases"))
    assert all_cases is not None and all_cases > 0
    assert (replay.subsets["serendipitous_next"].cases or 0) <= all_cases
    overlap = replay.training_overlap
    assert overlap is not None
    assert overlap.held_out_before_retriever_cutoff + overlap.held_out_after_retriever_cutoff == all_cases
    assert json.loads(layout.replay_path.read_text()) == replay.to_json()
    assert ReplayReport.read(layout.replay_path) == replay


def test_hit_rates_are_proportions_with_intervals(replay: ReplayReport) -> None:
    for content in replay.subsets.values():
        assert set(content.methods) == set(METHOD_HELP)
        for stats in content.methods.values():
            if not content.cases:
                continue
            assert 0 <= stats.hits <= content.cases
            assert stats.mean == pytest.approx(stats.hits / content.cases)
            assert stats.ci_low <= stats.mean <= stats.ci_high


def test_mllm_hits_match_an_independent_count(chain_config: PipelineConfig, replay: ReplayReport) -> None:
    layout = WorkLayout.of(chain_config)
    column = level_column(chain_config.mining.level)
    items = pq.read_table(layout.catalog_dir() / ITEMS_FILE).to_pandas().set_index("item_id")[column]
    predicted = (
        pq.read_table(layout.serendipity_path).to_pandas().set_index("item_id")["serendipitous_cluster"]
    )
    log = pq.read_table(layout.validated_dir / INTERACTIONS_FILE).to_pandas()
    engaged = log[log["satisfaction"] > chain_config.engagement.satisfaction_above]
    engaged = engaged.sort_values(["user_id", "ts", "item_id"], kind="stable")
    hits = cases = 0
    for _, group in engaged.groupby("user_id"):
        if len(group) < 2 or group["item_id"].iloc[-2] not in predicted.index:
            continue
        cases += 1
        hits += int(predicted[group["item_id"].iloc[-2]] == items[group["item_id"].iloc[-1]])
    assert (cases, hits) == (replay.subsets["all"].cases, replay.subsets["all"].methods["mllm"].hits)


def test_validation_period_replay_counts_the_later_serendipitous_pairs(
    chain_config: PipelineConfig, replay: ReplayReport
) -> None:
    from serendipity.nomination.prior import PriorInfo, epoch_micros

    layout = WorkLayout.of(chain_config)
    period = replay.validation_period
    assert period is not None
    cut = PriorInfo.read(layout.prior_info_path).cuts.calibration_end_micros
    pairs = pq.read_table(layout.pairs_path).to_pandas()
    pairs = pairs[epoch_micros(pairs["ts"]) >= cut]
    served = pq.read_table(layout.serendipity_path).to_pandas().set_index("item_id")["serendipitous_cluster"]
    covered = pairs[pairs["context_item_id"].isin(served.index)]
    hits = int((covered["context_item_id"].map(served) == covered["next_cluster"]).sum())
    subsets = period.subsets
    assert subsets["all"].cases == len(covered) > 0
    assert subsets["all"].methods["served"].hits == hits
    assert subsets["warm"].cases + subsets["cold"].cases == len(covered)
    for subset in subsets.values():
        chance = subset.methods["random_sibling"].mean
        assert subset.cases == 0 or 0 < chance <= 0.5 + 1e-9  # at least two siblings besides one's own


def test_rerun_is_idempotent(chain_config: PipelineConfig, replay: ReplayReport) -> None:
    assert run_replay(chain_config) == replay


def test_missing_input_names_the_path(chain_config: PipelineConfig, tmp_path: Path) -> None:
    empty = chain_config.model_copy(update={"work_dir": tmp_path / "work"})
    with pytest.raises(ReplayError, match="validated interactions not found at .*validated"):
        run_replay(empty)


def test_replay_command_and_report_on_the_chain(retrieval_chain: Path, replay: ReplayReport) -> None:
    import typer
    from typer.testing import CliRunner

    from serendipity.app.commands.report import app as report_app
    from serendipity.app.commands.report import replay as replay_command

    replay_app = typer.Typer()
    replay_app.command()(replay_command)
    result = CliRunner().invoke(replay_app, ["--config", str(retrieval_chain)])
    assert result.exit_code == 0, result.output
    assert "mllm" in result.output and "non_llm_frequent" in result.output

    result = CliRunner().invoke(report_app, ["--config", str(retrieval_chain)])
    assert result.exit_code == 0, result.output
    layout = WorkLayout.of(load_config(retrieval_chain))
    reports = layout.reports_dir
    report = json.loads(layout.report_json_path.read_text())
    assert report["sections"]["replay"]["data"] == replay.to_json()
    assert report["sections"]["aggregates"]["present"]
    statuses = {c["claim_id"]: c["status"] for c in report["claims"]}
    assert statuses["1"] != "not measured" and statuses["8"] != "not measured"
    assert statuses["2"] == "not measured" or report["sections"]["experiment"]["present"]
    assert "Offline replay on logged next items" in (reports / "report.html").read_text()


def test_replay_is_the_pipeline_stage_of_a_dataset_without_a_simulator(
    chain_config: PipelineConfig, replay: ReplayReport
) -> None:
    """The same chain without a `world:`: evaluate is disabled, the replay stage runs and feeds claim 8."""
    from serendipity.app.pipeline import run_pipeline
    from serendipity.eval.report import build_report

    no_world = chain_config.model_copy(update={"world": None})
    results = run_pipeline(no_world, stages=["evaluate", "replay"], force=True)
    assert [(r.name, r.status) for r in results] == [("evaluate", "disabled"), ("replay", "ran")]
    assert ReplayReport.read(WorkLayout.of(no_world).replay_path) == replay
    claim = next(c for c in build_report(no_world).claims if c.claim_id == "8")
    assert claim.source == "replay" and claim.status != "not measured"
    cases = replay.subsets["all"].cases
    assert f"hit rate on {cases} held-out next items: mllm " in claim.evidence
    served = pq.read_table(WorkLayout.of(no_world).serendipity_path).column("model_version").to_pylist()
    assert replay.served_model_versions == sorted(set(served))
    assert f"served cluster from {', '.join(sorted(set(served)))}" in claim.evidence


def test_report_from_the_real_experiment(experiment_config: Path, replay: ReplayReport) -> None:
    """The report built on the simulated experiment that ray_jobs/evaluate.py ran on the chain."""
    from serendipity.eval.report import build_report, headline_table

    report = build_report(load_config(experiment_config), experiment_config)
    experiment = report.data.experiment
    assert experiment is not None and experiment.seeds == [0, 1, 2]
    statuses = {c.claim_id: c.status for c in report.claims}
    for claim_id in ("2", "3", "4", "5"):
        assert statuses[claim_id] in ("holds", "does not hold", "inconclusive"), (claim_id, statuses)
    table = headline_table(report).splitlines()
    assert [line.split("|")[1].strip() for line in table[2:]] == experiment.arms

"""The Spark mining chain (aggregates, pairs, curate, corpus) against independent pandas references."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from reference import mining as reference
from reference.contract_data import (
    job_pipeline_config,
    prepare_validated,
    read_table,
)

from serendipity.config import PipelineConfig
from serendipity.corpus_manifest import CorpusManifest
from serendipity.layout import WorkLayout
from serendipity.schema import (
    CLUSTERS_FILE,
    CLUSTERS_SCHEMA,
    CONTEXT_CLUSTER_SCORES_SCHEMA,
    CORPUS_SCHEMA,
    INTERACTIONS_FILE,
    INTERACTIONS_SCHEMA,
    ITEMS_FILE,
    PAIRS_SCHEMA,
    SFT_SCHEMA,
)
from serendipity.stage_stats import AggregatesStats, CorpusStats, CurateStats, PairsStats, read_stage_stats
from serendipity.tree import ClusterTree
from spark_jobs import MINING_JOBS, aggregates, corpus

CHAIN = [importlib.import_module(f"spark_jobs.{name}") for name in MINING_JOBS]


@pytest.fixture(scope="module")
def mining_dataset(world_dataset: Path) -> Path:
    return world_dataset


@pytest.fixture(scope="module")
def mined_config(
    spark, test_config: PipelineConfig, mining_dataset: Path, tmp_path_factory
) -> PipelineConfig:
    """Config of a work dir where the whole chain has run once."""
    config = job_pipeline_config(test_config, mining_dataset, tmp_path_factory.mktemp("mining") / "work")
    prepare_validated(config)
    for job in CHAIN:
        job.run(config)
    return config


def _setup(config: PipelineConfig) -> tuple[PipelineConfig, WorkLayout, pd.DataFrame]:
    layout = WorkLayout.of(config)
    interactions = read_table(layout.validated_dir / INTERACTIONS_FILE)
    items = read_table(layout.catalog_dir() / ITEMS_FILE)
    m = config.mining
    return config, layout, reference.consecutive_pairs(interactions, items, m.level, m.session_gap_minutes)


def assert_same_rows(actual: pd.DataFrame, expected: pd.DataFrame, keys: list[str]) -> None:
    assert list(actual.columns) == list(expected.columns)
    assert len(actual) == len(expected)
    actual = actual.sort_values(keys, kind="mergesort").reset_index(drop=True)
    expected = expected.sort_values(keys, kind="mergesort").reset_index(drop=True)
    for column in actual.columns:
        left, right = actual[column], expected[column]
        if pd.api.types.is_float_dtype(left) or pd.api.types.is_float_dtype(right):
            np.testing.assert_allclose(left.to_numpy(float), right.to_numpy(float), rtol=1e-12, atol=1e-12)
        else:
            assert left.tolist() == right.tolist(), column


def test_aggregates_match_reference(mined_config: PipelineConfig) -> None:
    _, layout, ref_pairs = _setup(mined_config)
    overall, per_cluster = reference.aggregates(ref_pairs)
    assert_same_rows(read_table(layout.aggregates_overall_path), overall, ["pair_class"])
    assert_same_rows(
        read_table(layout.aggregates_per_cluster_path),
        per_cluster,
        ["context_parent_cluster", "pair_class"],
    )
    assert set(overall["pair_class"]) == {"similar", "serendipitous", "distant"}
    assert read_stage_stats(layout, AggregatesStats).outputs.pairs == len(ref_pairs)


def test_pairs_and_scores_match_reference(mined_config: PipelineConfig) -> None:
    config, layout, ref_pairs = _setup(mined_config)
    ref_serendipitous = reference.serendipitous(ref_pairs)
    assert len(ref_serendipitous) > 0
    written = read_table(layout.pairs_path)
    assert_same_rows(written, ref_serendipitous, ["user_id", "ts", "context_item_id", "next_item_id"])
    assert (written["context_cluster"] != written["next_cluster"]).all()
    ref_scores = reference.scores(ref_serendipitous, config.mining.smoothing, config.mining.min_support)
    assert_same_rows(read_table(layout.scores_path), ref_scores, ["context_item_id", "next_cluster"])


def _split_pairs(config: PipelineConfig, ref_pairs: pd.DataFrame) -> pd.DataFrame:
    serendipitous = reference.serendipitous(ref_pairs)
    cuts = reference.time_cuts(
        serendipitous, config.mining.calibration_fraction, config.mining.validation_fraction
    )
    return reference.with_split(serendipitous, cuts)


def test_time_split_and_transition_prior_match_reference(mined_config: PipelineConfig) -> None:
    from serendipity.nomination.prior import PriorInfo, load_prior
    from spark_jobs.transitions import SHRINKAGE_GRID

    config, layout, ref_pairs = _setup(mined_config)
    serendipitous = reference.serendipitous(ref_pairs)
    m, settings = config.mining, config.prior
    cuts = reference.time_cuts(serendipitous, m.calibration_fraction, m.validation_fraction)
    info = PriorInfo.read(layout.prior_info_path)
    assert (info.cuts.train_end_micros, info.cuts.calibration_end_micros) == pytest.approx(cuts)
    split = reference.with_split(serendipitous, cuts)
    assert (
        info.pairs_by_split
        == split["split"].value_counts().reindex(["train", "calibration", "validation"]).to_dict()
    )
    train = split[split["split"] == "train"]
    clusters = read_table(layout.catalog_dir() / CLUSTERS_FILE)
    expected = reference.cluster_prior(train, clusters, m.level, settings.smoothing)
    written = read_table(layout.cluster_prior_path)
    assert_same_rows(written, expected, ["context_cluster", "next_cluster"])
    assert np.allclose(written.groupby("context_cluster")["probability"].sum(), 1.0)
    items, beta = reference.item_prior(train, expected, settings.min_item_transitions, SHRINKAGE_GRID)
    assert info.shrinkage == pytest.approx(beta) and info.warm_items == items["context_item_id"].nunique() > 0
    columns = ["context_item_id", "context_cluster", "next_cluster", "weight", "probability"]
    assert_same_rows(read_table(layout.item_prior_path), items[columns], ["context_item_id", "next_cluster"])
    prior = load_prior(layout)  # the library's reading: warm items use their own row, cold their cluster's
    row = items.iloc[0]
    options = expected[expected["context_cluster"] == row["context_cluster"]]["next_cluster"].tolist()
    own = items[items["context_item_id"] == row["context_item_id"]].set_index("next_cluster")["probability"]
    assert prior.probabilities(
        int(row["context_item_id"]), int(row["context_cluster"]), options
    ) == pytest.approx(own.loc[options].tolist())
    cold = expected[expected["context_cluster"] == row["context_cluster"]].set_index("next_cluster")[
        "probability"
    ]
    assert prior.probabilities(-1, int(row["context_cluster"]), options) == pytest.approx(
        cold.loc[options].tolist()
    )


def test_curated_examples_match_reference(mined_config: PipelineConfig) -> None:
    config, layout, ref_pairs = _setup(mined_config)
    m = config.mining
    expected = reference.curate(_split_pairs(config, ref_pairs), m)
    examples = read_table(layout.sft_path)
    assert_same_rows(examples, expected, ["split", "target_cluster", "rank", "context_item_id"])
    train = examples[examples["split"] == "train"]
    assert train.groupby("target_cluster").size().max() <= m.top_k_per_cluster
    by_split = examples.groupby("split")["context_item_id"].agg(set)
    assert set(by_split.index) == {"train", "calibration", "validation"}
    assert all(len(items) <= m.max_holdout_items for items in by_split)
    descriptions = read_table(layout.descriptions_path)
    clusters = read_table(layout.catalog_dir() / CLUSTERS_FILE)
    assert_same_rows(descriptions, clusters[list(descriptions.columns)], ["cluster_id"])
    assert pq.read_schema(layout.descriptions_path).equals(CLUSTERS_SCHEMA, check_metadata=False)
    assert len(ClusterTree.load(layout.descriptions_path)) == len(clusters)


def test_corpus_matches_reference(mined_config: PipelineConfig) -> None:
    config, layout, _ = _setup(mined_config)
    interactions = read_table(layout.validated_dir / INTERACTIONS_FILE)
    expected = reference.corpus(interactions, config.mining.corpus_coverage)
    written = read_table(layout.corpus_path)
    assert_same_rows(written, expected, ["item_id"])
    manifest = _manifest_with_item_ids(layout)
    assert manifest["achieved_coverage"] >= config.mining.corpus_coverage
    assert manifest["achieved_coverage"] == pytest.approx(expected["cumulative_share"].iloc[-1])
    assert sorted(manifest["item_ids"]) == sorted(expected["item_id"])
    assert_same_rows(read_table(layout.corpus_delta_path), expected, ["item_id"])


def _manifest_with_item_ids(layout: WorkLayout) -> dict:
    """The manifest's JSON summary, with the item ids of its committed Parquet items."""
    manifest = CorpusManifest.load(layout.corpus_manifest_path)
    assert manifest is not None
    items_dir = manifest.items_dir(layout.corpus_manifest_path)
    item_ids = pq.read_table(items_dir, columns=["item_id"]).column(0).to_pylist()
    return json.loads(layout.corpus_manifest_path.read_text()) | {"item_ids": item_ids}


def test_outputs_follow_the_contract_schemas(mined_config: PipelineConfig) -> None:
    layout = WorkLayout.of(mined_config)
    for path, schema in (
        (layout.pairs_path, PAIRS_SCHEMA),
        (layout.scores_path, CONTEXT_CLUSTER_SCORES_SCHEMA),
        (layout.sft_path, SFT_SCHEMA),
        (layout.corpus_path, CORPUS_SCHEMA),
        (layout.corpus_delta_path, CORPUS_SCHEMA),
    ):
        written = pq.read_table(path).schema
        assert [(f.name, f.type) for f in written] == [(f.name, f.type) for f in schema], path
    for kind in (AggregatesStats, PairsStats, CurateStats, CorpusStats):
        stats = read_stage_stats(layout, kind)
        assert stats.job == kind.JOB  # and every input and output figure is there (typed read)


def _snapshot(layout: WorkLayout) -> dict[str, pd.DataFrame]:
    paths = [
        layout.aggregates_overall_path,
        layout.aggregates_per_cluster_path,
        layout.pairs_path,
        layout.scores_path,
        layout.sft_path,
        layout.descriptions_path,
        layout.corpus_path,
        layout.corpus_delta_path,
    ]
    return {str(path): read_table(path) for path in paths} | {
        "manifest": pd.DataFrame([json.loads(layout.corpus_manifest_path.read_text())])
    }


def test_rerun_is_idempotent_and_leaves_no_temporary_output(mined_config: PipelineConfig) -> None:
    layout = WorkLayout.of(mined_config)
    before = _snapshot(layout)
    for job in CHAIN:
        job.run(mined_config)
    after = _snapshot(layout)
    assert before.keys() == after.keys()
    for name, frame in before.items():
        pd.testing.assert_frame_equal(after[name], frame, check_exact=True, obj=name)
    leftovers = [p for p in layout.work_dir.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]
    assert leftovers == []


def test_corpus_delta_is_exactly_the_new_items(spark, mined_config: PipelineConfig, tmp_path: Path) -> None:
    config = job_pipeline_config(mined_config, mined_config.dataset_dir, tmp_path / "work")
    layout = WorkLayout.of(config)
    shutil.copytree(WorkLayout.of(mined_config).validated_dir, layout.validated_dir)
    corpus.run(config)
    first = set(read_table(layout.corpus_path)["item_id"])

    logs_path = layout.validated_dir / INTERACTIONS_FILE
    logs = pq.read_table(logs_path).to_pandas()
    top_count = int(logs.groupby("item_id").size().max())
    new_ids = [int(logs["item_id"].max()) + 1, int(logs["item_id"].max()) + 2]
    fresh = pd.DataFrame(
        {
            "user_id": 0,
            "item_id": np.repeat(new_ids, top_count + 5),
            "ts": logs["ts"].max(),
            "satisfaction": 1.0,
            "impression": True,
            "source": "organic",
        }
    )
    grown = pd.concat([logs, fresh[logs.columns]], ignore_index=True)
    if logs_path.is_dir():  # written by the validate job as a Spark directory
        shutil.rmtree(logs_path)
    pq.write_table(pa.Table.from_pandas(grown, schema=INTERACTIONS_SCHEMA, preserve_index=False), logs_path)
    corpus.run(config)
    second = set(read_table(layout.corpus_path)["item_id"])
    delta = read_table(layout.corpus_delta_path)
    assert set(new_ids) <= second
    assert set(delta["item_id"]) == second - first
    assert set(new_ids) <= set(delta["item_id"])

    corpus.run(config)
    assert set(read_table(layout.corpus_delta_path)["item_id"]) == second - first


def test_missing_input_names_the_file(spark, test_config: PipelineConfig, tmp_path: Path) -> None:
    config = job_pipeline_config(test_config, tmp_path / "dataset", tmp_path / "work")
    with pytest.raises(FileNotFoundError, match="validated interactions.*interactions.parquet"):
        aggregates.run(config)

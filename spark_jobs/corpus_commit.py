"""The corpus job's commit: the delta's baseline and the committed generation, as Spark-written Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from serendipity.corpus_manifest import CorpusManifest, fingerprint
from serendipity.io import atomic_directory
from spark_jobs.mining import row_fingerprint

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def delta_baseline(
    spark: SparkSession, previous: CorpusManifest | None, manifest_path: Path, corpus_fingerprint: str
) -> DataFrame:
    """Item ids already covered before this run.

    Re-running on unchanged input (same corpus as the manifest) reuses the manifest's own baseline,
    so the delta, like every output, is the same on every re-run.
    """
    if previous is None:
        return spark.createDataFrame([], "item_id long")
    if previous.corpus_fingerprint == corpus_fingerprint:
        return spark.read.parquet(str(previous.baseline_dir(manifest_path)))
    return spark.read.parquet(str(previous.items_dir(manifest_path))).select("item_id")


def commit_generation(
    items: DataFrame, coverage: float, achieved: float, manifest_path: Path
) -> tuple[CorpusManifest, DataFrame]:
    """Write the corpus ``items`` and their delta baseline as a generation; the manifest naming it and
    the baseline. The manifest is not written yet: the caller writes it last, as the commit."""
    item_count, hashes = row_fingerprint(items)
    corpus_fingerprint = fingerprint(item_count, hashes)
    previous = CorpusManifest.load(manifest_path)
    baseline = delta_baseline(items.sparkSession, previous, manifest_path, corpus_fingerprint)
    baseline_fingerprint = fingerprint(*row_fingerprint(baseline))
    manifest = CorpusManifest(item_count, corpus_fingerprint, baseline_fingerprint, coverage, achieved)
    generation_dir = manifest.items_dir(manifest_path).parent
    if not generation_dir.exists():  # an unchanged rerun names the generation it already wrote
        with atomic_directory(generation_dir) as staging:
            items.write.parquet(str(staging / manifest.items_dir(manifest_path).name))
            baseline.write.parquet(str(staging / manifest.baseline_dir(manifest_path).name))
    return manifest, items.sparkSession.read.parquet(str(manifest.baseline_dir(manifest_path)))

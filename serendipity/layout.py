"""Where each stage reads and writes under ``work_dir``: one place, so stages never guess paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from serendipity.config import PipelineConfig


@dataclass(frozen=True)
class WorkLayout:
    """Paths of every stage output. Each is a file or directory written atomically."""

    work_dir: Path

    @classmethod
    def of(cls, config: PipelineConfig) -> WorkLayout:
        return cls(config.work_dir)

    # validation (usable rows in the contract's files; unusable rows under quarantine/)
    @property
    def validated_dir(self) -> Path:
        return self.work_dir / "validated"

    @property
    def quarantine_dir(self) -> Path:
        return self.validated_dir / "quarantine"

    # tree building, for datasets without a real tree: clusters.parquet + items.parquet (c1..c4)
    @property
    def tree_dir(self) -> Path:
        return self.work_dir / "tree"

    def catalog_dir(self) -> Path:
        """Where clusters.parquet and items.parquet come from: the built tree when there is one."""
        return self.tree_dir if (self.tree_dir / "clusters.parquet").exists() else self.validated_dir

    # Spark mining chain
    @property
    def aggregates_dir(self) -> Path:
        return self.work_dir / "aggregates"

    @property
    def aggregates_overall_path(self) -> Path:
        """Satisfaction per pair class (similar / serendipitous / distant)."""
        return self.aggregates_dir / "overall.parquet"

    @property
    def aggregates_per_cluster_path(self) -> Path:
        """Satisfaction per pair class and context cluster at level L-1."""
        return self.aggregates_dir / "per_cluster.parquet"

    @property
    def pairs_path(self) -> Path:
        return self.work_dir / "pairs" / "serendipitous_pairs.parquet"

    @property
    def scores_path(self) -> Path:
        return self.work_dir / "pairs" / "context_cluster_scores.parquet"

    @property
    def sft_path(self) -> Path:
        return self.work_dir / "sft" / "examples.parquet"

    @property
    def descriptions_path(self) -> Path:
        return self.work_dir / "sft" / "cluster_descriptions.parquet"

    @property
    def corpus_path(self) -> Path:
        return self.work_dir / "corpus" / "corpus.parquet"

    @property
    def corpus_delta_path(self) -> Path:
        return self.work_dir / "corpus" / "delta.parquet"

    @property
    def corpus_manifest_path(self) -> Path:
        return self.work_dir / "corpus" / "manifest.json"

    @property
    def user_history_path(self) -> Path:
        return self.work_dir / "features" / "user_history.parquet"

    @property
    def item_meta_path(self) -> Path:
        return self.work_dir / "features" / "item_meta.parquet"

    @property
    def feast_dir(self) -> Path:
        """Feast state of this pipeline: relative registry/online-store paths resolve here."""
        return self.work_dir / "feast"

    # models and inference
    @property
    def models_dir(self) -> Path:
        return self.work_dir / "models"

    @property
    def finetune_dir(self) -> Path:
        return self.work_dir / "finetune"

    @property
    def serendipity_path(self) -> Path:
        return self.work_dir / "inference" / "serendipity.parquet"

    @property
    def inference_errors_path(self) -> Path:
        return self.work_dir / "inference" / "errors.parquet"

    @property
    def inference_manifest_path(self) -> Path:
        return self.work_dir / "inference" / "manifest.parquet"

    @property
    def retriever_dir(self) -> Path:
        """The sequence model, item index and offline metrics (``serendipity.retrieval``)."""
        return self.work_dir / "retriever"

    @property
    def retriever_train_dir(self) -> Path:
        """Ray Train storage (checkpoints) of the sequence model's training runs."""
        return self.work_dir / "retriever_train"

    @property
    def reports_dir(self) -> Path:
        return self.work_dir / "reports"

    def job_stats_path(self, job: str) -> Path:
        """Input/output row counts a job records."""
        return self.work_dir / "_stats" / f"{job}.json"

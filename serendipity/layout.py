"""Where each stage reads and writes under ``work_dir``: one place, so stages never guess paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from serendipity.config import PipelineConfig
from serendipity.schema import CLUSTERS_FILE

# File names that several stages agree on (the stage writing one and the stages reading it).
LATEST_MODEL_POINTER = "latest"  # under models_dir: the published model version's name
RETRIEVER_METRICS_FILE = "metrics.json"
CURVES_CSV = "curves.csv"
FINETUNE_SUMMARY_FILE = "summary.json"
FEATURES_MATERIALIZED_FILE = "materialized.json"
EXPERIMENT_DIR = "experiment"
EXPERIMENT_FILE = "experiment.json"
IMPRESSIONS_FILE = "impressions.parquet"
REPLAY_FILE = "replay.json"
ABLATION_DIR = "ablation"
ABLATION_TABLE_JSON = "ablation.json"
REPORT_HTML_FILE = "report.html"
REPORT_JSON_FILE = "report.json"


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
        return self.tree_dir if (self.tree_dir / CLUSTERS_FILE).exists() else self.validated_dir

    def described_tree_source(self) -> Path:
        """The tree source with every cluster description: the curated descriptions, else the catalogue."""
        return self.descriptions_path if self.descriptions_path.exists() else self.catalog_dir()

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
    def prior_dir(self) -> Path:
        return self.work_dir / "prior"

    @property
    def cluster_prior_path(self) -> Path:
        return self.prior_dir / "cluster_prior.parquet"

    @property
    def item_prior_path(self) -> Path:
        return self.prior_dir / "item_prior.parquet"

    @property
    def prior_info_path(self) -> Path:
        """The time cuts of the split, the fitted shrinkage and the snapshot id (``PriorInfo``)."""
        return self.prior_dir / "prior_info.json"

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
        """Feast source computed from the logs (the user_history stage): users' recent engaged items."""
        return self.work_dir / "feast_sources" / "user_history.parquet"

    @property
    def item_meta_path(self) -> Path:
        """Feast source computed from the logs (the user_history stage): items' cluster path, popularity."""
        return self.work_dir / "feast_sources" / "item_meta.parquet"

    @property
    def feast_dir(self) -> Path:
        """Feast state of this pipeline: relative registry/online-store paths resolve here."""
        return self.work_dir / "feast"

    @property
    def features_materialized_path(self) -> Path:
        """Marker the materialize stage writes once the online store is materialised."""
        return self.feast_dir / FEATURES_MATERIALIZED_FILE

    # models and inference
    @property
    def models_dir(self) -> Path:
        return self.work_dir / "models"

    @property
    def latest_model_pointer(self) -> Path:
        """Text file naming the published model version under ``models_dir``."""
        return self.models_dir / LATEST_MODEL_POINTER

    @property
    def finetune_dir(self) -> Path:
        return self.work_dir / "finetune"

    @property
    def finetune_curves_path(self) -> Path:
        return self.finetune_dir / CURVES_CSV

    @property
    def finetune_summary_path(self) -> Path:
        return self.finetune_dir / FINETUNE_SUMMARY_FILE

    @property
    def finetune_quarantine_path(self) -> Path:
        """Curated rows that fine-tuning could not use, with the reason."""
        return self.finetune_dir / "quarantine.parquet"

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
    def retriever_metrics_path(self) -> Path:
        return self.retriever_dir / RETRIEVER_METRICS_FILE

    @property
    def retriever_train_dir(self) -> Path:
        """Ray Train storage (checkpoints) of the sequence model's training runs."""
        return self.work_dir / "retriever_train"

    @property
    def reports_dir(self) -> Path:
        return self.work_dir / "reports"

    @property
    def experiment_dir(self) -> Path:
        """The simulated experiment's impressions and ``experiment.json``."""
        return self.reports_dir / EXPERIMENT_DIR

    @property
    def experiment_path(self) -> Path:
        return self.experiment_dir / EXPERIMENT_FILE

    @property
    def replay_path(self) -> Path:
        return self.reports_dir / REPLAY_FILE

    @property
    def ablation_dir(self) -> Path:
        return self.reports_dir / ABLATION_DIR

    @property
    def ablation_table_path(self) -> Path:
        return self.ablation_dir / ABLATION_TABLE_JSON

    @property
    def report_html_path(self) -> Path:
        return self.reports_dir / REPORT_HTML_FILE

    @property
    def report_json_path(self) -> Path:
        return self.reports_dir / REPORT_JSON_FILE

    def job_stats_path(self, job: str) -> Path:
        """Input/output row counts a job records."""
        return self.work_dir / "_stats" / f"{job}.json"

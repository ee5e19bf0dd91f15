"""Building a 4-level, traffic-balanced, described cluster tree for datasets that lack one.

Engine-agnostic pieces used by ``spark_jobs/build_tree.py``: item embeddings (``embed``), balanced
clustering of one parent group (``balanced``), cluster descriptions (``describe``) and how well they
represent their members (``quality``), the contract tables plus balance report (``tables``).
"""

from serendipity.treebuild.balanced import balanced_kmeans, combine_features, split_parent_group
from serendipity.treebuild.describe import describe_tree, leaf_term_weights, tokenize
from serendipity.treebuild.embed import TEXT_DIM, embed_items, embed_texts, load_text_encoder
from serendipity.treebuild.quality import format_name_quality, name_quality
from serendipity.treebuild.tables import balance_report, cluster_ids, clusters_table, leaf_levels

__all__ = [
    "TEXT_DIM",
    "balance_report",
    "balanced_kmeans",
    "cluster_ids",
    "clusters_table",
    "combine_features",
    "describe_tree",
    "embed_items",
    "embed_texts",
    "format_name_quality",
    "leaf_levels",
    "leaf_term_weights",
    "load_text_encoder",
    "name_quality",
    "split_parent_group",
    "tokenize",
]

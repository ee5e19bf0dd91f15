"""Build a 4-level traffic-balanced, described cluster tree for a dataset that lacks one.

Reads items + interactions (``WorkLayout.validated_dir``, else ``dataset_dir``); writes
``WorkLayout.tree_dir`` = clusters.parquet, items.parquet (new c1..c4), balance.json, tree_info.json.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow.parquet as pq

from serendipity.config import PipelineConfig
from serendipity.io import atomic_directory, write_json_atomic
from serendipity.logs import run_logged, setup_logging
from serendipity.schema import CLUSTERS_FILE, ITEMS_FILE, TREE_INFO_FILE
from serendipity.stage_stats import BuildTreeInputs, BuildTreeOutputs, BuildTreeStats, write_stage_stats
from serendipity.treebuild.quality import format_name_quality
from serendipity.treebuild.tables import format_balance
from serendipity.worklock import holds_work_dir
from spark_jobs.common import config_from_argv, start_job
from spark_jobs.tree_frames import build_balanced_tree, read_tree_inputs

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

BALANCE_FILE = "balance.json"


@holds_work_dir("build_tree")
def run(config: PipelineConfig, spark: SparkSession | None = None) -> BuildTreeStats:
    layout, spark = start_job(config, spark)
    input_dir = layout.validated_dir if layout.validated_dir.exists() else config.dataset_dir
    items, interactions = read_tree_inputs(spark, input_dir)
    media_roots = list(dict.fromkeys([input_dir, config.dataset_dir]))
    built = build_balanced_tree(items, config.tree, media_roots)
    with atomic_directory(layout.tree_dir) as staging:
        built.items.write.parquet(str(staging / ITEMS_FILE))
        pq.write_table(built.clusters, staging / CLUSTERS_FILE)
        built.balance.write(staging / BALANCE_FILE)
        write_json_atomic(
            {
                "placeholder": False,
                "built_by": "build_tree",
                **config.tree.model_dump(),
                "name_quality": built.name_quality.to_json(),
            },
            staging / TREE_INFO_FILE,
        )
    stats = write_stage_stats(
        layout,
        BuildTreeStats(
            inputs=BuildTreeInputs(items=items.count(), interactions=interactions.count()),
            outputs=BuildTreeOutputs(
                items=built.placed_items,
                clusters=built.clusters.num_rows,
                items_with_thumbnail=built.items_with_thumbnail,
            ),
        ),
    )
    print(format_balance(built.balance))
    print(format_name_quality(built.name_quality))
    return stats


def main(argv: list[str] | None = None) -> BuildTreeStats:
    setup_logging()
    config = config_from_argv(__doc__.splitlines()[0], argv)
    return run_logged("build_tree", lambda: run(config))


if __name__ == "__main__":
    main()

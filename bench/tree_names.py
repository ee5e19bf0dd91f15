"""Cluster-name quality on MovieLens latest-small: the naming of a given git revision vs the current one.

One clustering is built in-process with the library's own pieces (``embed_items``, then
``split_parent_group`` level by level, exactly what ``spark_jobs/build_tree.py`` runs per group), and
both namings describe the SAME clusters from the same term weights. The older naming is a copy of
``serendipity/treebuild/describe.py`` taken from git, imported from the path given on the command line:

    git show HEAD:serendipity/treebuild/describe.py > /tmp/old_describe.py
    flock /tmp/serendipity-tests.lock .venv/bin/python -m bench.tree_names \
        --old-describe /tmp/old_describe.py --old-revision "$(git rev-parse HEAD)" \
        --source ../shared/datasets/movielens-ml-latest-small

Reported per naming: ``name_quality`` (serendipity.treebuild.quality) per level and overall, and 10
example names per level. Saves ``bench/results/tree_names.json`` with the command and the load average.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from serendipity.config import TreeBuildConfig
from serendipity.io import write_json_atomic
from serendipity.schema import INTERACTIONS_FILE, ITEMS_FILE
from serendipity.treebuild import describe as new_describe
from serendipity.treebuild.balanced import splitter
from serendipity.treebuild.embed import embed_items
from serendipity.treebuild.quality import name_quality

RESULTS = Path(__file__).resolve().parent / "results" / "tree_names.json"
EXAMPLES_PER_LEVEL = 10


def load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def movielens_items(source: Path, scratch: Path) -> pd.DataFrame:
    """Items of the ingested dataset with traffic (= interactions) and the describe job's document."""
    from serendipity.datasets.movielens import ingest_movielens

    ingest_movielens(source, scratch / "dataset")
    items = pd.read_parquet(scratch / "dataset" / ITEMS_FILE, columns=["item_id", "title", "text"])
    interactions = pd.read_parquet(scratch / "dataset" / INTERACTIONS_FILE, columns=["item_id"])
    traffic = interactions["item_id"].value_counts()
    items["traffic"] = items["item_id"].map(traffic).fillna(0.0).astype(float)
    items["thumbnail_path"] = None
    # what build_tree's describe step reads: concat_ws(". ", title, text)
    items["document"] = [
        ". ".join(part for part in (title, text) if isinstance(part, str))
        for title, text in zip(items["title"], items["text"], strict=True)
    ]
    return items.sort_values("item_id", kind="stable").reset_index(drop=True)


def cluster_items(items: pd.DataFrame, vectors: np.ndarray, tree: TreeBuildConfig) -> pd.Series:
    """Leaf path per item: the job's top-down balanced splits, one pandas group per parent path."""
    current = pd.DataFrame(
        {
            "item_id": items["item_id"],
            "path": "",
            "traffic": items["traffic"],
            "text_embedding": list(vectors),
            "image_embedding": [np.zeros(0, dtype=np.float32)] * len(items),
            "has_image": False,
        }
    )
    for branching in tree.branching:
        split = splitter(branching, tree)
        groups = [split(group) for _, group in current.groupby("path", sort=True)]
        current = pd.concat(groups, ignore_index=True)
    return items["item_id"].map(current.set_index("item_id")["path"])


def examples(descriptions: dict[str, str], num_levels: int) -> dict[str, list[str]]:
    by_level: dict[str, list[str]] = {}
    for level in range(1, num_levels + 1):
        paths = sorted(
            (p for p in descriptions if p.count(".") == level - 1),
            key=lambda p: [int(part) for part in p.split(".")],
        )
        step = max(1, len(paths) // EXAMPLES_PER_LEVEL)
        by_level[str(level)] = [descriptions[p] for p in paths[::step][:EXAMPLES_PER_LEVEL]]
    return by_level


def evaluate_naming(
    module: ModuleType, items: pd.DataFrame, vectors: np.ndarray, tree: TreeBuildConfig
) -> dict[str, Any]:
    term_weights = module.leaf_term_weights(items[["path", "traffic", "document"]])
    leaves = items.groupby("path", sort=True)[["path", "traffic"]].apply(module.leaf_summary)
    started = time.perf_counter()
    descriptions = module.describe_tree(
        term_weights, leaves.reset_index(drop=True), len(tree.branching), tree.terms_per_label
    )
    seconds = time.perf_counter() - started
    quality = name_quality(descriptions, items["path"].tolist(), vectors)
    return {
        "name_quality": quality.to_json(),
        "naming_seconds": round(seconds, 3),
        "examples": examples(descriptions, len(tree.branching)),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-describe", type=Path, required=True, help="describe.py of the old naming")
    parser.add_argument("--old-revision", default="HEAD", help="the git revision --old-describe came from")
    parser.add_argument("--source", type=Path, required=True, help="the ml-latest-small directory")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    tree = TreeBuildConfig()
    old_describe = load_module(args.old_describe, "old_describe")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tree_names_") as scratch:
        items = movielens_items(args.source, Path(scratch))
    embedded = embed_items(items, [], batch_size=tree.embed_batch_size)
    vectors = np.stack(embedded["text_embedding"].to_numpy()).astype(np.float32)
    embed_seconds = time.perf_counter() - started
    items["path"] = cluster_items(items, vectors, tree)
    results = {
        "command": " ".join([sys.executable, *sys.argv]) if argv is None else " ".join(argv),
        "old_naming_from": f"git show {args.old_revision}:serendipity/treebuild/describe.py",
        "dataset": str(args.source),
        "items": len(items),
        "branching": list(tree.branching),
        "terms_per_label": tree.terms_per_label,
        "old_naming": evaluate_naming(old_describe, items, vectors, tree),
        "new_naming": evaluate_naming(new_describe, items, vectors, tree),
        "ingest_and_embed_seconds": round(embed_seconds, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
            "python": platform.python_version(),
        },
    }
    print(json.dumps(results, indent=2))
    write_json_atomic(results, args.out)
    return results


if __name__ == "__main__":
    main()

"""Batch inference of serendipitous_cluster(context_item): store, corpus, per-batch steps, driver.

``ray_jobs/infer.py`` is the job that runs ``run_inference``; everything it needs lives here.
"""

from serendipity.inference.corpus_items import content_hashes, load_corpus_items
from serendipity.inference.driver import run_inference
from serendipity.inference.store import InferenceStore, append_audit, error_rows, prediction_rows

__all__ = [
    "InferenceStore",
    "append_audit",
    "content_hashes",
    "error_rows",
    "load_corpus_items",
    "prediction_rows",
    "run_inference",
]

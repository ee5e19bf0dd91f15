"""The PySpark jobs: each ``spark_jobs/<name>.py`` of ``SPARK_JOBS`` has ``run(config, spark)`` and ``main``.

The other modules hold what the jobs share: ``common`` (Spark I/O: session and its scope, reads, atomic
and sorted writes, job stats), ``corpus_commit`` (the corpus manifest's Parquet generations) and the
DataFrame transforms (``mining``, ``snapshots``, ``tree_frames``, ``validation_*``).
"""

MINING_JOBS: tuple[str, ...] = ("aggregates", "pairs", "prior", "curate", "corpus")
SPARK_JOBS: tuple[str, ...] = ("validate", "build_tree", *MINING_JOBS, "user_history")

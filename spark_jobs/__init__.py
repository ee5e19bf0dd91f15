"""The PySpark jobs: each ``spark_jobs/<name>.py`` of ``SPARK_JOBS`` has ``run(config, spark)`` and ``main``.

The other modules hold what the jobs share: ``common`` (Spark I/O: session, reads, atomic writes, job
stats) and the DataFrame transforms (``mining``, ``snapshots``, ``tree_frames``, ``validation_*``).
"""

MINING_JOBS: tuple[str, ...] = ("aggregates", "pairs", "curate", "corpus")
SPARK_JOBS: tuple[str, ...] = ("validate", "build_tree", *MINING_JOBS, "user_history")

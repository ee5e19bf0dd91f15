"""The PySpark jobs: each job module ``spark_jobs/<name>.py`` has ``run(config, spark)`` and ``main``.

Which modules are jobs, and in what order the pipeline runs them, is the stage table's
(``serendipity.app.stages``: the stages on ``Engine.SPARK``, ``spark_job_names()``). The other modules hold
what the jobs share: ``common`` (Spark I/O: session and its scope, reads, atomic and sorted writes, job
stats), ``corpus_commit`` (the corpus manifest's Parquet generations) and the DataFrame transforms
(``mining``, ``snapshots``, ``tree_frames``, ``validation_*``).
"""

# The mining chain after validation, in order (the tests run it as a group).
MINING_JOBS: tuple[str, ...] = ("aggregates", "pairs", "prior", "curate", "corpus")

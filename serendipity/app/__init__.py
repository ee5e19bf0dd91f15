"""The application layer: the command line (``cli``, ``commands/``), the pipeline and its stage table.

Only this package imports the job and repository packages (``spark_jobs``, ``ray_jobs``, ``features``,
``serving``); the rest of ``serendipity`` is the library they all import (``tests/unit/test_layers.py``).
"""

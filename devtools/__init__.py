"""Development tooling shared by ``tests/`` and ``bench/``; not part of the installed distribution.

pyproject's ``[tool.setuptools.packages.find]`` leaves this package out, and nothing under
``serendipity/``, ``serving/``, ``spark_jobs/``, ``ray_jobs/`` or ``features/`` imports it
(tests/unit/test_dev_tooling.py checks both). It is importable from the repository root: pytest adds
the root to ``sys.path`` (``pythonpath`` in pyproject) and benchmarks run there as ``python -m bench.NAME``.

``services``: free loopback ports, process groups, a private ``redis-server``; ``feast_sources``: the
test worlds' synthetic Feast sources; ``browser``: headless Chromium driven by Selenium (the browser
tests and ``python -m devtools.screenshot``, which makes the README's screenshot).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
"""The repository root: tests and benchmarks run from it, and subprocesses they start work in it."""

VENV_BIN = Path(sys.executable).parent
"""The running interpreter's scripts directory (the project's virtualenv ``bin``): ``ray``,
``spark-submit``, ``serendipity`` as installed beside this Python."""

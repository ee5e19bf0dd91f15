"""Benchmarks: each module is a script run from the repository root as ``python -m bench.NAME``.

Not part of the installed distribution; the figures go to ``bench/results/``. Helpers that more than one
script uses live in ``bench.common``.
"""

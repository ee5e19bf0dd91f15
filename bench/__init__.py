"""Benchmarks: each module is a script run from the repository root as ``python -m bench.NAME``.

Not part of the installed distribution; the figures go to ``bench/results/``. Helpers the benchmarks share
with the tests (the repository root, free ports, a private redis-server, synthetic Feast sources) live in
the ``devtools`` package beside this one, importable because the scripts run from the repository root.
"""

"""Fixtures shared by the Serve tests: one local Serve app over the serving chain per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_helpers import ServedChain, serve_chain


@pytest.fixture(scope="session")
def served(retrieval_chain: Path) -> Iterator[ServedChain]:
    from ray import serve

    yield serve_chain(retrieval_chain)
    serve.shutdown()

"""What more than one benchmark script needs: the repository root and a free loopback port."""

from __future__ import annotations

import socket
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
"""The repository root: ``python -m bench.NAME`` runs from it, and subprocesses of a benchmark start in it."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

"""One writer per work dir: a run holds ``<work_dir>/.writer.lock`` (an exclusive ``flock``) while it writes.

A second run on the same work dir fails at once with :class:`WorkDirBusyError` naming the holder (pid,
host, start time, what it runs), which the holder records as JSON in the lock file. The kernel releases
the lock when its process ends however it ends, so the lock of a dead process is taken over by the next
run. Holds nest within one process: code called by a holder may hold the same work dir again.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

if TYPE_CHECKING:
    from serendipity.config import PipelineConfig

LOCK_FILE = ".writer.lock"
_Options = ParamSpec("_Options")
_Stats = TypeVar("_Stats")

_held_depth: dict[Path, int] = {}  # work dirs this process holds, with how deeply the holds nest
_held_guard = threading.Lock()


class WorkDirBusyError(RuntimeError):
    """Another run (another process) holds the work dir."""


@dataclass(frozen=True)
class LockHolder:
    pid: int
    host: str
    started: str  # ISO-8601, UTC
    purpose: str

    def describe(self) -> str:
        return f"{self.purpose} (pid {self.pid} on host {self.host}, started {self.started})"


def read_holder(work_dir: str | Path) -> LockHolder | None:
    """Who holds (or last held) ``work_dir``, when the lock file names anyone."""
    try:
        return LockHolder(**json.loads((Path(work_dir) / LOCK_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


@contextmanager
def _flock(work_dir: Path, purpose: str, shared: bool) -> Iterator[LockHolder]:
    work_dir.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(work_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = read_holder(work_dir)
            named = (
                holder.describe() if holder else "running jobs (or a run that has not recorded itself yet)"
            )
            raise WorkDirBusyError(
                f"work dir {work_dir} is in use by {named}; wait for it to finish or use another work_dir"
            ) from None
        started = datetime.now(UTC).isoformat(timespec="seconds")
        holder = LockHolder(os.getpid(), socket.gethostname(), started, purpose)
        if shared:  # several jobs may share the work dir: none of them is *the* holder to name
            yield holder
            return
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(asdict(holder)).encode(), 0)
        try:
            yield holder
        finally:
            os.ftruncate(descriptor, 0)  # a run refused later never names a finished holder
    finally:
        os.close(descriptor)  # releases the flock


@contextmanager
def work_dir_lock(work_dir: str | Path, purpose: str, shared: bool = False) -> Iterator[None]:
    """Hold ``work_dir`` for this process while the block runs; WorkDirBusyError when another holds it.

    A ``shared`` hold (a single job) admits other shared holds (jobs writing disjoint outputs, as a
    cluster scheduler runs them side by side) but no exclusive one (a pipeline run), and the reverse."""
    key = Path(work_dir).resolve()
    with _held_guard:
        nested = key in _held_depth
        if nested:
            _held_depth[key] += 1
    if nested:
        try:
            yield
        finally:
            with _held_guard:
                _held_depth[key] -= 1
        return
    with _flock(key, purpose, shared):
        with _held_guard:
            _held_depth[key] = 1
        try:
            yield
        finally:
            with _held_guard:
                del _held_depth[key]


def holds_work_dir(
    job: str,
) -> Callable[
    [Callable[Concatenate[PipelineConfig, _Options], _Stats]],
    Callable[Concatenate[PipelineConfig, _Options], _Stats],
]:
    """Decorate a job's ``run(config, ...)`` so it holds ``config.work_dir`` (shared with other jobs, never
    with a pipeline run) while it runs, however it is called (``main``, the CLI, or the pipeline, whose own
    hold it nests in)."""

    def decorate(
        run: Callable[Concatenate[PipelineConfig, _Options], _Stats],
    ) -> Callable[Concatenate[PipelineConfig, _Options], _Stats]:
        @wraps(run)
        def locked(config: PipelineConfig, *args: _Options.args, **kwargs: _Options.kwargs) -> _Stats:
            with work_dir_lock(config.work_dir, f"{job} job", shared=True):
                return run(config, *args, **kwargs)

        return locked

    return decorate

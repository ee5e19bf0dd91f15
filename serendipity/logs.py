"""One logging set-up for the command line, the jobs' ``main()``s and the processes they start.

``setup_logging`` installs one stderr handler on the root logger, formatting every record as a JSON
line (``ts``, ``level``, ``logger``, ``message`` and the record's structured extras) or as a text line
(the same fields, extras as ``key=value``). Our own packages log at INFO (DEBUG with ``verbose``);
everything else at WARNING unless ``verbose`` (faiss's loader, Feast's and Ray's INFO chatter). The
choice is exported in ``SERENDIPITY_LOG_FORMAT`` / ``SERENDIPITY_VERBOSE``, which the processes started
from here inherit and a job submitted with ``ray job submit`` can be given in its runtime env.

``stage_events`` logs ``stage started`` / ``stage finished`` (``duration_s`` and, from a Spark job's
``StageStats`` or an ``InferenceSummary``, ``rows_in`` and ``rows_out``); ``ProgressLog`` logs
done/total with rate and ETA.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from serendipity.stage_stats import StageStats

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
LOG_FORMAT_ENV = "SERENDIPITY_LOG_FORMAT"
VERBOSE_ENV = "SERENDIPITY_VERBOSE"
OWN_LOGGERS = ("serendipity", "spark_jobs", "ray_jobs", "serving", "features")
STAGE_LOGGER = "serendipity.stage"
# The attributes every LogRecord has; anything else on a record came in through ``extra=``.
_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
Result = TypeVar("Result")


def record_extras(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a record carries beyond the standard ones (``extra={...}``); private ones
    (``_ray_timestamp_ns``, which Ray's record factory adds to every record) are left out."""
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _RECORD_FIELDS and not key.startswith("_")
    }


def _timestamp(record: logging.LogRecord) -> str:
    stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the extras and, on errors, the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        document.update(record_extras(record))
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


class TextFormatter(logging.Formatter):
    """``ts LEVEL logger: message key=value ...`` (values of the extras as JSON)."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{key}={json.dumps(value, default=str)}" for key, value in record_extras(record).items()
        )
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        line = f"{line} {extras}" if extras else line
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


class _OwnHandler(logging.StreamHandler):
    """The handler ``setup_logging`` installs: writes to the ``sys.stderr`` of the moment (a test runner's
    capture included), and is told apart from other handlers when set up again."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass  # StreamHandler.__init__ sets it; the property always answers sys.stderr


def env_log_format() -> LogFormat:
    value = os.environ.get(LOG_FORMAT_ENV, "text").strip().lower()
    if value not in LOG_FORMATS:
        raise ValueError(f"{LOG_FORMAT_ENV}={value!r}: expected one of {', '.join(LOG_FORMATS)}")
    return value  # type: ignore[return-value]


def env_verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def setup_logging(log_format: LogFormat | None = None, verbose: bool | None = None) -> None:
    """Format every log record on stderr as ``log_format``; without arguments, as the environment says.

    Replaces the handler an earlier call installed (and ``logging.basicConfig``'s), not other handlers.
    """
    log_format = log_format or env_log_format()
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r}: expected one of {', '.join(LOG_FORMATS)}")
    verbose = env_verbose() if verbose is None else verbose
    os.environ[LOG_FORMAT_ENV] = log_format
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    _json_only_stderr(log_format == "json")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _OwnHandler) or type(handler) is logging.StreamHandler:
            root.removeHandler(handler)
    handler = _OwnHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root.addHandler(handler)
    logging.captureWarnings(True)  # Python warnings as log lines too ("py.warnings"), not raw stderr text
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
    quiet_loaders()


_TQDM_DISABLE_ENV = "TQDM_DISABLE"


_TQDM_DISABLED_HERE = "SERENDIPITY_TQDM_DISABLED"  # set alongside: the bars are ours to turn back on


def _json_only_stderr(json_lines: bool) -> None:
    """JSON logs keep stderr to JSON lines: tqdm's bars (Feast's materialisation) off, back on for text."""
    if json_lines and _TQDM_DISABLE_ENV not in os.environ:
        os.environ[_TQDM_DISABLE_ENV] = os.environ[_TQDM_DISABLED_HERE] = "1"
    elif not json_lines and os.environ.pop(_TQDM_DISABLED_HERE, ""):
        os.environ.pop(_TQDM_DISABLE_ENV, "")


def quiet_loaders() -> None:
    """faiss logs which CPU build it loads (AVX512, AVX2, ...) at INFO on import: WARNING unless verbose."""
    logging.getLogger("faiss.loader").setLevel(logging.NOTSET if env_verbose() else logging.WARNING)


def ray_train_log_level() -> str:
    """Ray Train's own log level (``RunConfig(logging_config=LoggingConfig(log_level=...))``): its
    per-report "Reporting training result ..." lines are INFO, shown only when verbose."""
    return "INFO" if env_verbose() else "WARNING"


@runtime_checkable
class InferenceCounts(Protocol):
    """What batch inference's ``InferenceSummary`` counts (not imported: inference sits above this module)."""

    to_infer: int
    output_rows: int


@dataclass
class StageEvent:
    """What ``stage_events`` adds to its ``stage finished`` line: set ``figures`` or ``record`` a result."""

    figures: dict[str, Any] = field(default_factory=dict)

    def record(self, result: object) -> None:
        """Row counts of a Spark job's typed stats or of batch inference (``rows_in``, ``rows_out``);
        other results add nothing."""
        if isinstance(result, StageStats):
            self.figures.update(rows_in=result.rows_in, rows_out=result.output_figures())
        elif isinstance(result, InferenceCounts):
            self.figures.update(rows_in=result.to_infer, rows_out=result.output_rows)


@contextmanager
def stage_events(stage: str, logger: logging.Logger | None = None) -> Iterator[StageEvent]:
    """Log ``stage started``, then ``stage finished`` (or ``stage failed``) with ``duration_s``."""
    logger = logger or logging.getLogger(STAGE_LOGGER)
    logger.info("stage started", extra={"stage": stage})
    event = StageEvent()
    started = time.perf_counter()
    try:
        yield event
    except BaseException as error:
        duration = round(time.perf_counter() - started, 3)
        logger.error(
            "stage failed",
            extra={"stage": stage, "duration_s": duration, "error": f"{type(error).__name__}: {error}"},
        )
        raise
    duration = round(time.perf_counter() - started, 3)
    logger.info("stage finished", extra={"stage": stage, "duration_s": duration, **event.figures})


def run_logged(stage: str, run: Callable[[], Result]) -> Result:
    """``run()`` between ``stage started`` and ``stage finished`` (with its row counts when it has them)."""
    with stage_events(stage) as event:
        result = run()
        event.record(result)
    return result


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class ProgressLog:
    """A line per update: ``what done/total (pct), rate unit/s, ETA``; also as extras for JSON logs.

    ``every_s`` spaces the lines out (the last one, at ``total``, is always logged); ``clock`` is
    ``time.monotonic`` unless a test gives its own.
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        total: int,
        unit: str,
        *,
        every_s: float = 0.0,
        start: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger, self.what, self.total, self.unit = logger, what, total, unit
        self.every_s, self.clock = every_s, clock
        self.start, self.started = start, clock()
        self._last_logged = -math.inf

    def update(self, done: int, detail: str = "") -> None:
        """Log ``done`` (unless within ``every_s`` of the last line); ``detail`` ends the line."""
        now = self.clock()
        if done < self.total and now - self._last_logged < self.every_s:
            return
        self._last_logged = now
        elapsed = now - self.started
        rate = (done - self.start) / elapsed if elapsed > 0 else math.nan
        eta = (self.total - done) / rate if rate > 0 else math.nan
        share = done / self.total if self.total else 1.0
        self.logger.info(
            "%s %d/%d %s (%.0f%%), %.2f %s/s, ETA %s%s",
            self.what,
            done,
            self.total,
            self.unit,
            100 * share,
            rate,
            self.unit,
            _duration(eta),
            f"; {detail}" if detail else "",
            extra={
                "done": done,
                "total": self.total,
                "rate_per_s": None if math.isnan(rate) else round(rate, 3),
                "eta_s": None if math.isnan(eta) else round(eta, 1),
            },
        )

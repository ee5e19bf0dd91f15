"""The logging set-up: JSON and text lines with extras, stage events, progress lines, the CLI option."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from serendipity import logs
from serendipity.stage_stats import LogInputs, PairsOutputs, PairsStats

TOUCHED_LOGGERS = ("", *logs.OWN_LOGGERS, "faiss.loader")


@pytest.fixture
def clean_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The root handlers, the levels and the environment as they were before the test."""
    for name in (logs.LOG_FORMAT_ENV, logs.VERBOSE_ENV, "TQDM_DISABLE", "SERENDIPITY_TQDM_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    handlers = list(root.handlers)
    levels = {name: logging.getLogger(name).level for name in TOUCHED_LOGGERS}
    yield
    root.handlers[:] = handlers
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def _record(message: str = "loaded %d rows", *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("serendipity.test", logging.INFO, __file__, 1, message, args or (3,), None)
    record.__dict__.update(extra)
    return record


def test_a_json_line_parses_and_carries_the_fields_and_extras() -> None:
    record = _record(stage="pairs", duration_s=1.5, rows_out={"pairs": 7}, _ray_timestamp_ns=1)
    line = logs.JsonFormatter().format(record)
    document = json.loads(line)
    assert "\n" not in line
    assert document["level"] == "INFO" and document["logger"] == "serendipity.test"
    assert document["message"] == "loaded 3 rows"
    assert document["ts"].endswith("Z") and document["ts"][:4].isdigit()
    assert (document["stage"], document["duration_s"], document["rows_out"]) == ("pairs", 1.5, {"pairs": 7})
    assert not {"args", "msg", "levelno", "pathname", "_ray_timestamp_ns"} & set(document)


def test_a_json_line_carries_the_traceback_of_an_error() -> None:
    try:
        raise ValueError("bad row 12")
    except ValueError:
        record = _record()
        record.exc_info = sys.exc_info()
    document = json.loads(logs.JsonFormatter().format(record))
    assert "ValueError: bad row 12" in document["exception"]


def test_a_text_line_has_the_same_fields() -> None:
    line = logs.TextFormatter().format(_record(stage="pairs", rows_in=600))
    assert line.endswith(' INFO serendipity.test: loaded 3 rows stage="pairs" rows_in=600')


def test_setup_exports_the_choice_and_quiets_other_packages_unless_verbose(clean_logging: None) -> None:
    import os

    logs.setup_logging("json")
    logs.setup_logging("json")  # set up again: still one handler of ours
    ours = [h for h in logging.getLogger().handlers if isinstance(h.formatter, logs.JsonFormatter)]
    assert len(ours) == 1
    assert (os.environ[logs.LOG_FORMAT_ENV], os.environ[logs.VERBOSE_ENV]) == ("json", "0")
    assert os.environ["TQDM_DISABLE"] == "1"  # JSON lines only on stderr
    assert logging.getLogger("serendipity.anything").isEnabledFor(logging.INFO)
    assert not logging.getLogger("faiss.loader").isEnabledFor(logging.INFO)
    assert not logging.getLogger("feast.infra").isEnabledFor(logging.INFO)
    assert logs.ray_train_log_level() == "WARNING"

    logs.setup_logging("text", verbose=True)
    assert isinstance(ours[0], logs._OwnHandler) and ours[0] not in logging.getLogger().handlers
    assert "TQDM_DISABLE" not in os.environ  # our own setting, undone
    assert logging.getLogger("serendipity.anything").isEnabledFor(logging.DEBUG)
    assert logging.getLogger("faiss.loader").isEnabledFor(logging.INFO)
    assert logs.ray_train_log_level() == "INFO"


def test_setup_reads_the_environment_and_rejects_an_unknown_format(
    clean_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(logs.LOG_FORMAT_ENV, "json")
    monkeypatch.setenv(logs.VERBOSE_ENV, "true")
    logs.setup_logging()
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, logs._OwnHandler))
    assert isinstance(handler.formatter, logs.JsonFormatter) and logs.env_verbose()
    monkeypatch.setenv(logs.LOG_FORMAT_ENV, "xml")
    with pytest.raises(ValueError, match="SERENDIPITY_LOG_FORMAT='xml'"):
        logs.setup_logging()


def _pairs_stats() -> PairsStats:
    return PairsStats(
        inputs=LogInputs(interactions=600, items=80),
        outputs=PairsOutputs(serendipitous_pairs=42, context_cluster_scores=17),
    )


def test_stage_events_carry_duration_and_the_stats_row_counts(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=logs.STAGE_LOGGER):
        stats = logs.run_logged("pairs", _pairs_stats)
    assert stats.rows_in == 600
    started, finished = caplog.records
    assert (started.getMessage(), logs.record_extras(started)) == ("stage started", {"stage": "pairs"})
    extras = logs.record_extras(finished)
    assert finished.getMessage() == "stage finished" and extras["stage"] == "pairs"
    assert extras["duration_s"] >= 0
    assert extras["rows_in"] == 600
    assert extras["rows_out"] == {"serendipitous_pairs": 42, "context_cluster_scores": 17}


def test_a_failing_stage_logs_its_error_and_raises(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.INFO, logger=logs.STAGE_LOGGER),
        pytest.raises(KeyError),
        logs.stage_events("prior"),
    ):
        raise KeyError("split")
    failed = caplog.records[-1]
    assert failed.levelno == logging.ERROR and failed.getMessage() == "stage failed"
    assert logs.record_extras(failed)["error"] == "KeyError: 'split'"


def test_stage_event_reads_the_counts_of_batch_inference() -> None:
    from serendipity.inference.summary import InferenceSummary, InferenceTally

    summary = InferenceSummary(
        corpus_items=90,
        to_infer=12,
        tally=InferenceTally(),
        output_rows=90,
        error_rows=0,
        model_version="v1",
        seconds=1.0,
        driver_peak_rss_mb=1.0,
    )
    event = logs.StageEvent()
    event.record(summary)
    assert event.figures == {"rows_in": 12, "rows_out": 90}
    other = logs.StageEvent()
    other.record({"not": "counted"})
    assert other.figures == {}


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_lines_give_rate_and_eta_and_are_spaced_out(caplog: pytest.LogCaptureFixture) -> None:
    clock = _Clock()
    progress = logs.ProgressLog(
        logging.getLogger("serendipity.test"), "inferred", 100, "items", every_s=10, clock=clock
    )
    with caplog.at_level(logging.INFO, logger="serendipity.test"):
        clock.now += 20
        progress.update(40)  # 2 items/s, 60 to go: 30 s
        clock.now += 5
        progress.update(50)  # within 10 s of the last line: not logged
        clock.now += 25
        progress.update(100, "loss 0.500")  # the last line is always logged
    first, last = caplog.records
    assert first.getMessage() == "inferred 40/100 items (40%), 2.00 items/s, ETA 0m30s"
    assert logs.record_extras(first) == {"done": 40, "total": 100, "rate_per_s": 2.0, "eta_s": 30.0}
    assert last.getMessage() == "inferred 100/100 items (100%), 2.00 items/s, ETA 0m00s; loss 0.500"


def test_the_cli_option_sets_the_format_and_names_the_choices(clean_logging: None) -> None:
    import os

    from serendipity.app.cli import app

    done = CliRunner().invoke(app, ["--log-format", "json", "--verbose", "pipeline", "stages"])
    assert done.exit_code == 0, done.output
    assert (os.environ[logs.LOG_FORMAT_ENV], os.environ[logs.VERBOSE_ENV]) == ("json", "1")
    wrong = CliRunner().invoke(app, ["--log-format", "xml", "pipeline", "stages"])
    assert wrong.exit_code == 2 and "'text', 'json'" in wrong.output


def test_the_cli_reads_the_same_environment_variables_as_the_jobs() -> None:
    from serendipity.app.cli import main

    envvars = {default.envvar for default in main.__defaults__ or ()}  # the typer.Option defaults
    assert envvars == {logs.LOG_FORMAT_ENV, logs.VERBOSE_ENV}

"""The serve load benchmarks' typed figures: the JSON bench.serve_load and bench.soak write, read back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.load_figures import LoadRun, Overload, RateRow, Recovery, ServeLoadResult, SoakResult, SoakWindow

RUN: dict[str, Any] = {
    "rate": 50.0,
    "sent": 750,
    "ok": 740,
    "errors": {"http 503": 10},
    "shed": 10,
    "other_errors": 0,
    "elapsed_s": 15.009,
    "throughput_rps": 49.3,
    "p50_ms": 28.74,
    "p99_ms": 58.91,
    "shed_p99_ms": 2.1,
    "generator_cpu_s": 1.07,
}
TIMED_OUT: dict[str, Any] = {  # run_load's figures when the load process ran over its limit: no elapsed_s
    "rate": 100.0,
    "sent": 1000,
    "ok": 0,
    "errors": {"load process over 80 s": 1000},
    "shed": 0,
    "other_errors": 1000,
    "throughput_rps": 0.0,
    "p50_ms": None,
    "p99_ms": None,
    "shed_p99_ms": None,
    "generator_cpu_s": None,
}


def _serve_load(with_overload: bool) -> dict[str, Any]:
    result: dict[str, Any] = {
        "command": "python -m bench.serve_load --config c.yaml",
        "front": "admission front (HAProxy) -> Serve's proxy",
        "duration_s": 15.0,
        "k": 10,
        "cpus": 2,
        "load_average_before": [0.43, 0.96, 1.58],
        "rates": [{"rate": 50.0, "recommend": RUN, "noop": TIMED_OUT, "p99_ratio": None, "met": False}],
        "capacity_rps": 50.0 if with_overload else None,
    }
    if with_overload:
        result["overload"] = {
            "rate": 150.0,
            "sent": 2250,
            "accepted": 900,
            "shed": 1350,
            "accepted_p99_ms": 499.9,
            "shed_p99_ms": 2.35,
            "other_errors": 0,
            "generator_cpu_s": 2.5,
        }
        result["recovery"] = {"rate": 25.0, "before": RUN, "after": RUN, "p99_change": -0.093}
    return result | {"load_average_after": [4.67, 2.63, 2.11], "under_load": False, "generator_cpu_s": 11.6}


def test_load_run_line_round_trip() -> None:
    for figures in (RUN, TIMED_OUT):
        run = LoadRun.model_validate(figures)
        assert json.loads(run.line()) == figures and list(json.loads(run.line())) == list(figures)
        assert LoadRun.from_line(run.line()) == run
    assert LoadRun.model_validate(TIMED_OUT).elapsed_s is None
    assert LoadRun.model_validate(RUN).errors == {"http 503": 10}


def test_built_run_leaves_out_what_was_not_measured() -> None:
    built = LoadRun(
        rate=100.0,
        sent=1000,
        ok=0,
        errors={"load process over 80 s": 1000},
        shed=0,
        other_errors=1000,
        throughput_rps=0.0,
        p50_ms=None,
        p99_ms=None,
        shed_p99_ms=None,
        generator_cpu_s=None,
    )
    assert built.to_json() == TIMED_OUT and list(built.to_json()) == list(TIMED_OUT)


@pytest.mark.parametrize("with_overload", [True, False])
def test_serve_load_result_keeps_its_keys(tmp_path: Path, with_overload: bool) -> None:
    written = _serve_load(with_overload)
    result = ServeLoadResult.model_validate(written)
    path = result.write(tmp_path / "results" / "serve_load.json")
    assert json.loads(path.read_text()) == written
    assert list(json.loads(path.read_text())) == list(written)
    read = ServeLoadResult.read(path)
    assert read == result and isinstance(read.rates[0], RateRow)
    assert read.rates[0].recommend.p99_ms == 58.91
    if with_overload:
        assert isinstance(read.overload, Overload) and read.overload.accepted == 900
        assert isinstance(read.recovery, Recovery) and read.recovery.after.p50_ms == 28.74
    else:
        assert read.overload is None and read.capacity_rps is None


def test_built_serve_load_result_matches_the_dict_it_replaced(tmp_path: Path) -> None:
    written = _serve_load(with_overload=True)
    run, timed_out = LoadRun.model_validate(RUN), LoadRun.model_validate(TIMED_OUT)
    built = ServeLoadResult(
        command=written["command"],
        front=written["front"],
        duration_s=15.0,
        k=10,
        cpus=2,
        load_average_before=[0.43, 0.96, 1.58],
        rates=[RateRow(rate=50.0, recommend=run, noop=timed_out, p99_ratio=None, met=False)],
        capacity_rps=50.0,
        overload=Overload.model_validate(written["overload"]),
        recovery=Recovery(rate=25.0, before=run, after=run, p99_change=-0.093),
        load_average_after=[4.67, 2.63, 2.11],
        under_load=False,
        generator_cpu_s=11.6,
    )
    assert json.loads(built.write(tmp_path / "serve_load.json").read_text()) == written


def test_notes_added_by_hand_are_kept(tmp_path: Path) -> None:
    noted = _serve_load(with_overload=False) | {"conditions": "2-core machine", "history": {"x": [1]}}
    path = tmp_path / "serve_load.json"
    path.write_text(json.dumps(noted))
    assert ServeLoadResult.read(path).to_json() == noted


def test_soak_result_round_trip(tmp_path: Path) -> None:
    window = SoakWindow(**LoadRun.model_validate(RUN).to_json(), at_s=30.6, rss_mib=2075.4, load_avg_1m=4.13)
    assert list(window.to_json()) == [*RUN, "at_s", "rss_mib", "load_avg_1m"]
    result = SoakResult(
        command="python -m bench.soak --config c.yaml",
        config="test",
        rate_rps=50.0,
        duration_s=600.0,
        window_s=30.0,
        cpus=2,
        load_average_before=[3.55, 3.08, 3.14],
        load_average_after=[2.14, 3.34, 3.36],
        sent=750,
        ok=740,
        shed=10,
        other_errors=0,
        worst_window_p99_ms=58.91,
        rss_mib_first=None,
        rss_mib_last=None,
        memory_growth=None,
        windows=[window],
    )
    path = result.write(tmp_path / "soak.json")
    assert path.read_text().endswith("}\n")
    read = SoakResult.read(path)
    assert read == result and read.windows[0].rss_mib == 2075.4 and read.windows[0].p99_ms == 58.91

"""The serving metrics through a real Prometheus (Debian's ``prometheus``) scraping Ray's metrics export
port and the admission front's HAProxy exporter, and the request logs of the ingress and the front.

A known mix of requests goes through a real HAProxy front in front of the session's Serve app: normal
ones, cold-start users, unknown context items, a burst the front sheds, and requests while the
recommender's store will not open. PromQL then shows each counter moved by exactly that mix.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from serve_helpers import AUTH, UNKNOWN_USER, ServedChain, known_pairs, reconfigure

from devtools.services import free_port
from serendipity.config import AdmissionConfig, ServingConfig
from serving.admission import front_log_file, run_front
from serving.guard import OVERLOADED
from serving.request_log import MESSAGE

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus is not installed (apt)"),
]

SCRAPE_INTERVAL = "1s"
# Ray's workers hand their metrics to the node's agent every RAY_metrics_report_interval_ms (10 s by
# default): a counter has settled once it stayed put this long
SETTLE_S = 13.0
WAIT_S = 60.0
BURST = 20
UNKNOWN_ITEM = 10**9


@dataclass(frozen=True)
class Scraped:
    prometheus: str  # the Prometheus HTTP API
    front: str  # the admission front in front of the session's Serve app
    front_log: Path


def _wait_ready(url: str, process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"prometheus at {url} not ready in {timeout_s} s")


@pytest.fixture(scope="module")
def scraped(served: ServedChain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    import ray

    directory = tmp_path_factory.mktemp("metrics")
    serve_port = int(served.url.rsplit(":", 1)[1])
    admission = AdmissionConfig(
        upstream_port=serve_port, max_active=1, max_waiting=1, max_wait_ms=30_000, metrics_port=free_port()
    )
    serving = ServingConfig(port=free_port(), admission=admission)
    ray_metrics = ray.nodes()[0]["MetricsExportPort"]
    scrape = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [
            {"job_name": "ray", "static_configs": [{"targets": [f"127.0.0.1:{ray_metrics}"]}]},
            {"job_name": "haproxy", "static_configs": [{"targets": [f"127.0.0.1:{admission.metrics_port}"]}]},
        ],
    }
    (directory / "prometheus.yml").write_text(yaml.safe_dump(scrape))
    port = free_port()
    command = [
        "prometheus",
        f"--config.file={directory / 'prometheus.yml'}",
        f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with (directory / "prometheus.log").open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, process)
        with run_front(serving, directory / "admission.cfg"):
            yield Scraped(
                url, f"http://127.0.0.1:{serving.port}", front_log_file(directory / "admission.cfg")
            )
    finally:
        process.terminate()
        process.wait(timeout=30)


def query(scraped: Scraped, promql: str) -> dict[tuple[tuple[str, str], ...], float]:
    """An instant PromQL query: each series' labels (sorted pairs) -> its value."""
    response = httpx.get(f"{scraped.prometheus}/api/v1/query", params={"query": promql}, timeout=10)
    response.raise_for_status()
    return {
        tuple(sorted(series["metric"].items())): float(series["value"][1])
        for series in response.json()["data"]["result"]
    }


def scalar(scraped: Scraped, promql: str) -> float:
    values = query(scraped, promql)
    return sum(values.values())


def eventually(read: Callable[[], object], wanted: Callable[[object], bool], timeout_s: float = WAIT_S):
    """``read()`` once ``wanted`` holds for it (polled each second), else fail showing the last value."""
    deadline = time.monotonic() + timeout_s
    value = read()
    while not wanted(value):
        if time.monotonic() > deadline:
            pytest.fail(f"still {value!r} after {timeout_s} s")
        time.sleep(1)
        value = read()
    return value


def settled(read: Callable[[], object]) -> object:
    """``read()`` once it stopped changing for ``SETTLE_S`` (what earlier tests recorded is exported)."""
    value, since = read(), time.monotonic()
    while time.monotonic() - since < SETTLE_S:
        time.sleep(1)
        latest = read()
        if latest != value:
            value, since = latest, time.monotonic()
    return value


ANSWERS = "sum by (source, degraded) (ray_serendipity_answers_total)"
COUNTS = {
    "requests": "sum(ray_serendipity_request_seconds_count)",
    "recommender_calls": "sum(ray_serendipity_recommender_call_seconds_count)",
    "closed_reads": 'sum(ray_serendipity_feature_reads_total{outcome="closed"})',
    "ok_reads": 'sum(ray_serendipity_feature_reads_total{outcome="ok"})',
}
STORE_EMPTY = "max(ray_serendipity_online_store_empty)"
STORE_AGE = "ray_serendipity_online_store_age_seconds > 0"
DENIED = 'sum(haproxy_frontend_requests_denied_total{proxy="public"})'


def snapshot(scraped: Scraped) -> dict:
    answers = {
        (dict(labels)["source"], dict(labels)["degraded"]): value
        for labels, value in query(scraped, ANSWERS).items()
    }
    return {"answers": answers, **{name: scalar(scraped, q) for name, q in COUNTS.items()}}


def _post(url: str, body: dict, rid: str | None = None) -> httpx.Response:
    headers = {**AUTH, **({"X-Request-ID": rid} if rid else {})}
    return httpx.post(f"{url}/recommend", json=body, headers=headers, timeout=60)


async def _burst(url: str, body: dict) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60, headers=AUTH) as client:
        return await asyncio.gather(*(client.post("/recommend", json=body) for _ in range(BURST)))


def serve_log_lines(rid: str) -> list[dict]:
    """The request-log lines (serving/request_log.py) of the ingress replicas that carry ``rid``."""
    import ray

    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs" / "serve"
    lines = []
    for path in logs.glob("requests_*RecommendIngress*.jsonl"):
        for line in path.read_text(errors="replace").splitlines():
            if rid in line:
                document = json.loads(line)
                if document.get("message") == MESSAGE and document.get("request_id") == rid:
                    lines.append(document)
    return lines


def test_a_known_mix_moves_each_counter_by_its_share(served: ServedChain, scraped: Scraped) -> None:
    eventually(lambda: scalar(scraped, 'up{job=~"ray|haproxy"}'), lambda up: up == 2)
    before = settled(lambda: snapshot(scraped))

    (user, item, _), (user2, item2, _) = known_pairs(served, 2)
    normal = [
        _post(scraped.front, {"user_id": u, "context_item_id": i, "k": 4}, f"metrics-normal-{n}")
        for n, (u, i) in enumerate([(user, item), (user2, item2), (user, item2)])
    ]
    cold = [
        _post(scraped.front, {"user_id": UNKNOWN_USER, "context_item_id": i, "k": 4}) for i in (item, item2)
    ]
    unknown = [
        _post(scraped.front, {"user_id": u, "context_item_id": UNKNOWN_ITEM, "k": 4})
        for u in (user, UNKNOWN_USER)
    ]
    burst = asyncio.run(_burst(scraped.front, {"user_id": user, "context_item_id": item, "k": 4}))
    reconfigure({"retriever_version": "no-store", "feature_store_yaml": "/nonexistent/feature_store.yaml"})
    try:
        eventually(
            lambda: max(
                query(scraped, 'ray_serendipity_served_version_info{retriever_version="no-store"}').values(),
                default=0,
            ),
            lambda value: value == 1,
        )
        emptied = [
            _post(scraped.front, {"user_id": user, "context_item_id": i, "k": 4}) for i in (item, item2)
        ]
        eventually(lambda: scalar(scraped, STORE_EMPTY), lambda empty: empty == 1)
    finally:
        reconfigure({})
    eventually(lambda: scalar(scraped, STORE_EMPTY), lambda empty: empty == 0)
    assert eventually(lambda: query(scraped, STORE_AGE), bool)  # from Feast's materialisation records

    assert [r.json()["source"] for r in normal] == ["serendipity"] * 3
    assert all(r.json()["source"] == "serendipity" and r.json()["cold_start"] for r in cold)
    assert all(r.json()["source"] == "fallback" and not r.json()["degraded"] for r in unknown)
    assert all(r.json()["source"] == "fallback" and r.json()["degraded"] for r in emptied)
    shed = [r for r in burst if r.status_code == 503]
    answered = [r for r in burst if r.status_code == 200]
    assert len(shed) + len(answered) == BURST and shed, [r.status_code for r in burst]
    assert all(r.json()["detail"] == OVERLOADED for r in shed)
    assert all(r.json()["source"] == "serendipity" for r in answered)

    total = len(normal) + len(cold) + len(unknown) + len(answered) + len(emptied)
    wanted_answers = {
        ("serendipity", "false"): len(normal) + len(cold) + len(answered),
        ("fallback", "false"): len(unknown),
        ("fallback", "true"): len(emptied),
    }

    def moved() -> dict:
        now = snapshot(scraped)
        answers = {key: now["answers"].get(key, 0) - before["answers"].get(key, 0) for key in wanted_answers}
        others = {name: now[name] - before[name] for name in COUNTS}
        return {"answers": answers, **others}

    def as_wanted(delta: dict) -> bool:
        return (
            delta["answers"] == wanted_answers
            and delta["requests"] == total
            and delta["recommender_calls"] == total
            and delta["closed_reads"] >= len(emptied)
            and delta["ok_reads"] >= len(normal) + len(cold)
        )

    eventually(moved, as_wanted)
    assert eventually(lambda: scalar(scraped, DENIED), lambda denied: denied == len(shed)) == len(shed)
    versions = eventually(
        lambda: query(
            scraped, "max by (model_version, retriever_version) (ray_serendipity_served_version_info)"
        ),
        lambda found: (
            any(dict(k)["retriever_version"] == "-" and v == 1 for k, v in found.items())
            and all(v == 0 for k, v in found.items() if dict(k)["retriever_version"] == "no-store")
        ),
    )
    assert all(dict(labels)["model_version"] != "none" for labels in versions)

    # the request id of a normal request, in the front's log and in the ingress's JSON line
    rid = "metrics-normal-0"
    front_lines = [json.loads(line) for line in scraped.front_log.read_text().splitlines() if rid in line]
    assert [(line["request_id"], line["status"], line["path"]) for line in front_lines] == [
        (rid, 200, "/recommend")
    ]
    ingress = eventually(lambda: serve_log_lines(rid), bool, timeout_s=20)
    assert len(ingress) == 1
    line = ingress[0]
    assert line["request_id"] == rid and line["user_id"] == user and line["context_item_id"] == item
    assert line["source"] == "serendipity" and line["degraded"] is False and line["status"] == 200
    assert line["latency_ms"] > 0 and line["model_version"] == dict(next(iter(versions)))["model_version"]

"""The Ray Serve application answering real HTTP on loopback, over the real chain's output.

Chain (once per session, in its own work dir): mined test world -> user_history sources (Spark) ->
tiny MLLM + batch inference (Ray Data) -> retriever (Ray Train) -> Feast apply + materialise ->
``serving.app.compose`` on local Serve with a bearer token.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import yaml
from serve_helpers import AUTH, TOKEN, UNKNOWN_USER, ServedChain, known_pairs, post, reconfigure

from devtools.services import free_port
from serendipity.config import PipelineConfig, ServingConfig
from serendipity.layout import WorkLayout
from serving.api import build_api

pytestmark = pytest.mark.slow


def test_health_ready_and_docs(served: ServedChain) -> None:
    assert httpx.get(f"{served.url}/healthz").json() == {"status": "alive"}  # no token needed
    ready = httpx.get(f"{served.url}/readyz", headers=AUTH)
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert ready.json()["feature_store_loaded"] is True and ready.json()["indexed_items"] > 0
    assert "swagger" in httpx.get(f"{served.url}/docs", headers=AUTH).text.lower()
    schema = httpx.get(f"{served.url}/openapi.json", headers=AUTH).json()
    assert schema["components"]["schemas"]["RecommendRequest"]["properties"]["k"]["maximum"] == (
        served.config.serving.max_k
    )


def test_recommendations_stay_inside_the_features_cluster(served: ServedChain) -> None:
    pairs = known_pairs(served, 5)
    assert pairs
    for user, item, cluster in pairs:
        response = post(served, {"user_id": user, "context_item_id": item, "k": 5})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["source"] == "serendipity" and body["degraded"] is False
        assert body["cluster"]["id"] == cluster and body["cluster"]["description"]
        assert body["items"] and len(body["items"]) <= 5
        for returned in body["items"]:
            assert returned["cluster_id"] == cluster == served.item_cluster[returned["item_id"]]


def test_seen_items_are_excluded(served: ServedChain) -> None:
    user, item, _ = known_pairs(served, 1)[0]
    first = [
        i["item_id"] for i in post(served, {"user_id": user, "context_item_id": item, "k": 6}).json()["items"]
    ]
    extra = first[:3]
    second = post(served, {"user_id": user, "context_item_id": item, "k": 6, "history": extra}).json()
    returned = {i["item_id"] for i in second["items"]}
    assert returned and not returned & {*extra, item, *served.history[user]}


def test_fallbacks_fire(served: ServedChain) -> None:
    user, item, _ = known_pairs(served, 1)[0]
    without_feature = sorted(set(served.item_cluster) - set(served.serendipity["item_id"]))
    assert without_feature, "every catalog item has a serendipity feature; the fallback cannot be reached"
    no_feature = post(served, {"user_id": user, "context_item_id": without_feature[0], "k": 4}).json()
    assert no_feature["source"] == "fallback" and no_feature["cluster"] is None and no_feature["items"]
    # an unknown user on an item without a feature (one with a feature is a cold start, below)
    unknown_user = post(
        served, {"user_id": UNKNOWN_USER, "context_item_id": without_feature[0], "k": 4}
    ).json()
    assert unknown_user["source"] == "neighbours" and unknown_user["items"]


def test_cold_start_user_explores_the_context_items_cluster(served: ServedChain) -> None:
    _, item, cluster = known_pairs(served, 1)[0]
    response = post(served, {"user_id": UNKNOWN_USER, "context_item_id": item, "k": 4})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"] == "serendipity" and body["cold_start"] is True and body["degraded"] is False
    assert body["cluster"]["id"] == cluster and body["items"]
    assert all(served.item_cluster[returned["item_id"]] == cluster for returned in body["items"])
    assert item not in {returned["item_id"] for returned in body["items"]}
    user, _, _ = known_pairs(served, 1)[0]
    assert post(served, {"user_id": user, "context_item_id": item, "k": 4}).json()["cold_start"] is False


def _redis_on_closed_port(config: PipelineConfig, directory: Path) -> Path:
    registry = WorkLayout.of(config).feast_dir / "data" / "registry.db"
    store = {
        "project": "serendipity",
        "provider": "local",
        "registry": {"path": str(registry), "cache_ttl_seconds": 0},
        "offline_store": {"type": "file"},
        "online_store": {"type": "redis", "connection_string": f"127.0.0.1:{free_port()}"},
        "entity_key_serialization_version": 3,
    }
    path = directory / "unreachable_feature_store.yaml"
    path.write_text(yaml.safe_dump(store))
    return path


def test_unreachable_store_degrades_instead_of_failing(served: ServedChain, tmp_path: Path) -> None:
    user, item, _ = known_pairs(served, 1)[0]
    broken = _redis_on_closed_port(served.config, tmp_path)
    reconfigure({"retriever_version": "broken-store", "feature_store_yaml": str(broken)})
    try:
        response = post(served, {"user_id": user, "context_item_id": item, "k": 4})
        assert response.status_code == 200, response.text
        assert response.json()["source"] == "fallback" and response.json()["degraded"] is True
    finally:
        reconfigure({})
    assert post(served, {"user_id": user, "context_item_id": item, "k": 4}).json()["degraded"] is False


def test_store_that_will_not_open_is_not_ready_but_still_serves(served: ServedChain, tmp_path: Path) -> None:
    user, item, _ = known_pairs(served, 1)[0]
    reconfigure({"retriever_version": "no-store", "feature_store_yaml": str(tmp_path / "absent.yaml")})
    try:
        ready = httpx.get(f"{served.url}/readyz", headers=AUTH)
        assert ready.status_code == 503 and ready.json()["feature_store_loaded"] is False
        response = post(served, {"user_id": user, "context_item_id": item, "k": 4})
        assert response.status_code == 200 and response.json()["degraded"] is True
    finally:
        reconfigure({})
    assert httpx.get(f"{served.url}/readyz", headers=AUTH).status_code == 200


def test_hot_swap_drops_no_request(served: ServedChain) -> None:
    user, item, _ = known_pairs(served, 1)[0]

    async def traffic(client: httpx.AsyncClient, stop: asyncio.Event) -> list[int]:
        codes = []
        while not stop.is_set():
            body = {"user_id": user, "context_item_id": item, "k": 3}
            codes.append((await client.post("/recommend", json=body, headers=AUTH)).status_code)
        return codes

    async def swap_under_load() -> list[int]:
        async with httpx.AsyncClient(base_url=served.url, timeout=60) as client:
            stop = asyncio.Event()
            workers = [asyncio.create_task(traffic(client, stop)) for _ in range(4)]
            await asyncio.to_thread(reconfigure, {"retriever_version": "v2"})
            stop.set()
            return [code for codes in await asyncio.gather(*workers) for code in codes]

    codes = asyncio.run(swap_under_load())
    assert codes and set(codes) == {200}
    assert httpx.get(f"{served.url}/readyz", headers=AUTH).json()["retriever_version"] == "v2"
    with pytest.raises(Exception, match="config file not found"):
        reconfigure(
            {"retriever_version": "v3", "config_path": str(served.config_path.parent / "missing.yaml")}
        )
    assert httpx.get(f"{served.url}/readyz", headers=AUTH).json()["retriever_version"] == "v2"
    reconfigure({})


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        ({"user_id": 1, "context_item_id": 1, "k": 0}, "k"),
        ({"user_id": 1, "context_item_id": 1, "k": 10**6}, "k"),
        ({"user_id": 1, "k": 5}, "context_item_id"),
        ({"user_id": "one", "context_item_id": 1}, "user_id"),
        ({"user_id": 1, "context_item_id": 1, "path": "/etc/passwd"}, "path"),
    ],
)
def test_bad_requests_get_422(served: ServedChain, body: dict, mentions: str) -> None:
    response = post(served, body)
    assert response.status_code == 422
    assert any(mentions in [str(p) for p in error["loc"]] for error in response.json()["detail"])


def test_malformed_json_gets_422(served: ServedChain) -> None:
    response = httpx.post(
        f"{served.url}/recommend", content=b"{not json", headers={**AUTH, "content-type": "application/json"}
    )
    assert response.status_code == 422 and "json" in response.text.lower()


def test_token_is_required_except_for_healthz(served: ServedChain) -> None:
    body = {"user_id": 1, "context_item_id": 1, "k": 1}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = post(served, body, headers)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    for path in ("/readyz", "/docs", "/openapi.json"):
        assert httpx.get(f"{served.url}{path}").status_code == 401
    assert httpx.get(f"{served.url}/healthz").status_code == 200


def test_oversize_body_gets_413(served: ServedChain) -> None:
    limit = served.config.serving.max_body_bytes
    history = list(range(limit // 2))
    response = post(served, {"user_id": 1, "context_item_id": 1, "k": 1, "history": history})
    assert response.status_code == 413 and str(limit) in response.text
    chunks = (b" " * 1024 for _ in range(limit // 1024 + 2))  # chunked: no content-length to trust
    chunked = httpx.post(f"{served.url}/recommend", content=chunks, headers=AUTH, timeout=60)
    assert chunked.status_code == 413


def test_without_a_token_the_api_is_open() -> None:
    class Backend:
        async def recommend(self, request):
            return {"items": [], "cluster": None, "reasoning": None, "source": "fallback", "degraded": False}

        async def readiness(self):
            return {"ready": True}

    from serendipity.config import ServingConfig

    api = build_api(Backend(), ServingConfig(max_k=7), token=None)

    async def call() -> tuple[int, int, int]:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api), base_url="http://test"
        ) as client:
            ok = await client.post("/recommend", json={"user_id": 1, "context_item_id": 2, "k": 7})
            too_many = await client.post("/recommend", json={"user_id": 1, "context_item_id": 2, "k": 8})
            return ok.status_code, too_many.status_code, (await client.get("/readyz")).status_code

    assert asyncio.run(call()) == (200, 422, 200)


def test_serve_config_is_valid_and_builds(repo_root: Path, test_config_path: Path) -> None:
    from ray.serve import Application
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve.schema import ServeDeploySchema

    from serving.app import build_app

    raw = yaml.safe_load((repo_root / "serving" / "config.yaml").read_text())
    schema = ServeDeploySchema.model_validate(raw)
    assert schema.http_options.host == "127.0.0.1"
    (application,) = schema.applications
    assert application.import_path == "serving.app:build_app"
    assert not any(str(value).startswith("/") for value in (application.args or {}).values())
    args = {**(application.args or {}), "config_path": str(test_config_path)}
    assert isinstance(call_user_app_builder_with_args_if_necessary(build_app, args), Application)
    with pytest.raises(Exception, match="Extra inputs"):  # args are validated as AppArgs, as `serve run` does
        call_user_app_builder_with_args_if_necessary(build_app, {"config": "x"})


def test_requests_past_max_in_flight_are_refused_before_their_body_is_read() -> None:
    release = asyncio.Event()

    class SlowBackend:
        async def recommend(self, request):
            await release.wait()
            return {"items": [], "cluster": None, "reasoning": None, "source": "fallback", "degraded": False}

        async def readiness(self):
            return {"ready": True}

    api = build_api(SlowBackend(), ServingConfig(max_in_flight=2, retry_after_s=4), token=None)
    body = {"user_id": 1, "context_item_id": 2, "k": 3}

    async def call() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            held = [asyncio.create_task(client.post("/recommend", json=body)) for _ in range(2)]
            await asyncio.sleep(0.2)
            refused = await client.post("/recommend", json=body)
            ready = await client.get("/readyz")  # not gated
            release.set()
            return [refused, ready, *await asyncio.gather(*held)]

    refused, ready, *held = asyncio.run(call())
    assert refused.status_code == 503 and refused.headers["retry-after"] == "4"
    assert refused.json()["request_id"] == refused.headers["x-request-id"]
    assert ready.status_code == 200 and [response.status_code for response in held] == [200, 200]

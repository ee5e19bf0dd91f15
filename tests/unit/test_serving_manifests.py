"""The RayService serves: a reachable proxy, only the Serve port open to others, Redis creds secret."""

from __future__ import annotations

from typing import Any

import yaml
from unit.test_infra_manifests import DOCUMENTS, INFRA, REPO_ROOT, containers, documents_of

SERVE_PORT = 8000
RAY_INTERNAL_PORTS = {6379, 8265, 10001}  # GCS, dashboard, Ray client


def test_rayservice_front_listens_where_its_service_reaches_it_and_reaches_serve() -> None:
    from serendipity.config import load_config

    (service,) = documents_of("RayService")
    cluster = yaml.safe_load(service["spec"]["serveConfigV2"])
    local = yaml.safe_load((REPO_ROOT / "serving" / "config.yaml").read_text())
    serving = load_config(INFRA / "configs" / "cluster.yaml").serving
    assert serving.port == SERVE_PORT and serving.admission.enabled
    # Serve's proxy: loopback, on the port the admission sidecar of the same pod forwards to
    assert cluster["http_options"] == {**local["http_options"], "port": serving.serve_port}
    assert local["http_options"]["host"] == "127.0.0.1" and serving.serve_port != SERVE_PORT
    ray_head, admission = service["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"]
    assert ray_head["name"] == "ray-head"  # it exposes its metrics port only (docs/operating.md)
    assert [port["containerPort"] for port in ray_head.get("ports", [])] == [8080]
    assert {"name": "serve", "containerPort": SERVE_PORT} in admission["ports"]
    command = admission["command"]
    assert command[:3] == ["serendipity", "serve", "admission"]
    # it listens on serving.host (0.0.0.0), which the ingress replicas read too: no --listen of its own
    assert "--listen" not in command and serving.host == "0.0.0.0"
    assert command[command.index("--config") + 1] == "/app/infra/configs/cluster.yaml"
    for container in (ray_head, admission):  # beyond loopback both refuse to start without the token
        token = next(variable for variable in container["env"] if variable["name"] == "SERENDIPITY_API_TOKEN")
        assert "secretKeyRef" in token["valueFrom"]


def _ray_pod_labels(service: dict[str, Any]) -> list[dict[str, str]]:
    spec = service["spec"]["rayClusterSpec"]
    templates = [
        spec["headGroupSpec"]["template"],
        *(group["template"] for group in spec["workerGroupSpecs"]),
    ]
    return [template["metadata"]["labels"] for template in templates]


def test_network_policy_admits_only_the_serve_port_from_outside() -> None:
    (policy,) = [p for p in documents_of("NetworkPolicy") if p["metadata"]["name"] == "serendipity-ray"]
    (service,) = documents_of("RayService")
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert all(selector.items() <= labels.items() for labels in _ray_pod_labels(service))
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    open_to_anyone: set[int] = set()
    for rule in policy["spec"]["ingress"]:
        peers = rule.get("from")
        ports = {port["port"] for port in rule.get("ports", [])}
        if peers is None:
            open_to_anyone |= ports or {-1}  # no ports: every port
        elif all(peer.get("podSelector", {}).get("matchLabels") == selector for peer in peers):
            assert "namespaceSelector" not in peers[0]  # the Ray pods themselves: any port
        elif all("prometheus" in str(peer.get("podSelector")) for peer in peers):
            assert ports == {8080, 8404}, rule  # the monitoring namespace: Ray's and HAProxy's metrics only
        else:
            assert ports and not ports & (RAY_INTERNAL_PORTS - {8265}), rule  # the operator: dashboard only
            assert all("kuberay-operator" in str(peer["podSelector"]) for peer in peers)
    assert open_to_anyone == {SERVE_PORT}


def test_redis_password_and_tls_come_from_a_secret() -> None:
    (secret,) = documents_of("Secret")
    connection = secret["stringData"]["redis-connection-string"]
    assert "password=${REDIS_PASSWORD}" in connection and "ssl=true" in connection
    assert all(value.startswith("${") or "${" in value for value in secret["stringData"].values())
    readers = 0
    for _, document in DOCUMENTS:
        for container in containers(document):
            for variable in container.get("env", []):
                if variable["name"] == "REDIS_CONNECTION_STRING":
                    reference = variable["valueFrom"]["secretKeyRef"]
                    assert reference == {"name": secret["metadata"]["name"], "key": "redis-connection-string"}
                    readers += 1
    assert readers >= 3  # the RayService (head and workers), the Feast jobs, the evaluation RayJob
    prod = yaml.safe_load((INFRA / "feast" / "prod" / "feature_store.yaml").read_text())
    assert prod["online_store"]["connection_string"] == "${REDIS_CONNECTION_STRING}"


def test_every_ray_pod_serves_behind_its_own_admission_sidecar() -> None:
    """A proxy on every node (EveryNode), each behind an admission sidecar on the Service's port."""
    (service,) = documents_of("RayService")
    assert yaml.safe_load(service["spec"]["serveConfigV2"])["proxy_location"] == "EveryNode"
    spec = service["spec"]["rayClusterSpec"]
    pods = [spec["headGroupSpec"]["template"], *(group["template"] for group in spec["workerGroupSpecs"])]
    for pod in pods:
        (sidecar,) = [c for c in pod["spec"]["containers"] if c["name"] == "admission"]
        assert {"name": "serve", "containerPort": SERVE_PORT} in sidecar["ports"]
        volumes = {volume["name"] for volume in pod["spec"]["volumes"]}
        assert {mount["name"] for mount in sidecar["volumeMounts"]} <= volumes


def test_the_rayservice_autoscales_its_worker_pods_with_serve() -> None:
    from serendipity.config import load_config

    (service,) = documents_of("RayService")
    autoscaling = load_config(INFRA / "configs" / "cluster.yaml").serving.autoscaling
    assert autoscaling.enabled and autoscaling.max_replicas > autoscaling.min_replicas
    spec = service["spec"]["rayClusterSpec"]
    assert spec["enableInTreeAutoscaling"] is True
    (group,) = spec["workerGroupSpecs"]
    bounds = (autoscaling.min_replicas, autoscaling.max_replicas)
    assert (group["minReplicas"], group["maxReplicas"]) == bounds
    assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_autoscaling_reaches_both_deployments_and_the_fronts_limit() -> None:
    from serendipity.config import AutoscalingConfig, ServingConfig
    from serving.admission import render_config
    from serving.app import ingress_scaling, recommender_scaling
    from serving.deployments import RecommenderDeployment
    from serving.ingress import RecommendIngress

    fixed = ServingConfig(recommender_replicas=3)
    assert recommender_scaling(fixed) == {"num_replicas": 3} and ingress_scaling(fixed) == {}
    assert fixed.front_max_active == fixed.admission.max_active
    scaling = AutoscalingConfig(enabled=True, min_replicas=1, max_replicas=2)
    scaled = ServingConfig(autoscaling=scaling, recommender_replicas=3)
    recommender = recommender_scaling(scaled)["autoscaling_config"]
    ingress = ingress_scaling(scaled)["autoscaling_config"]
    assert (recommender["min_replicas"], recommender["max_replicas"]) == (1, 2)
    assert recommender["target_ongoing_requests"] == scaling.recommender_target_ongoing_requests
    assert ingress["target_ongoing_requests"] == scaling.ingress_target_ongoing_requests
    # Serve validates the options here (unknown keys, min above max)
    RecommenderDeployment.options(**recommender_scaling(scaled))
    RecommendIngress.options(**ingress_scaling(scaled))
    assert scaled.front_max_active == 2 * scaled.admission.max_active
    assert f"maxconn {scaled.front_max_active}" in render_config(scaled)


def test_autoscaling_refuses_a_minimum_above_the_maximum() -> None:
    import pytest
    from pydantic import ValidationError

    from serendipity.config import AutoscalingConfig

    with pytest.raises(ValidationError, match="min_replicas=3 exceeds max_replicas=2"):
        AutoscalingConfig(min_replicas=3, max_replicas=2)

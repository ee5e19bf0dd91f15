"""The cluster manifests under infra/: they parse, name files that exist, and embed serving/config.yaml."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from serendipity.app.stages import Engine, spark_job_names, stages_on

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA = REPO_ROOT / "infra"
IMAGE_ROOT = "/app"  # WORKDIR of infra/docker/Dockerfile: the repository inside the image
IMAGE_PLACEHOLDER = "${SERENDIPITY_IMAGE}"
SUBMIT = INFRA / "spark" / "submit.sh"
EXPECTED_API_VERSIONS = {
    "RayJob": "ray.io/v1",
    "RayService": "ray.io/v1",
    "SparkApplication": "sparkoperator.k8s.io/v1beta2",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
    "NetworkPolicy": "networking.k8s.io/v1",
    "Secret": "v1",
}
WORKLOAD_KINDS = {"RayJob", "RayService", "SparkApplication", "Job", "CronJob"}
EXPECTED_RAY_JOB_MODULES = {
    "ray_jobs.finetune",
    "ray_jobs.infer",
    "ray_jobs.train_retriever",
    "ray_jobs.evaluate",
}
SECRET_LIKE_ENV = re.compile(r"TOKEN|PASSWORD|SECRET|REDIS|REGISTRY|CREDENTIAL|KEY", re.IGNORECASE)
IMAGE_PATH = re.compile(rf"(?:local://)?{IMAGE_ROOT}/([\w./-]+\.(?:py|yaml|yml|sh))")
REPO_RELATIVE_PATH = re.compile(
    r"(?<![\w/.])((?:configs|serving|infra|spark_jobs|ray_jobs)/[\w./-]+\.(?:py|yaml))"
)


def _load_render() -> ModuleType:
    spec = importlib.util.spec_from_file_location("infra_render", INFRA / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def manifest_documents() -> list[tuple[str, dict[str, Any]]]:
    """(file:index, document) of every Kubernetes object in infra/ (templates excluded)."""
    documents = []
    for path in sorted(INFRA.rglob("*.y*ml")):
        if ".template." in path.name:
            continue
        for index, document in enumerate(yaml.safe_load_all(path.read_text())):
            if isinstance(document, dict) and "kind" in document:
                documents.append((f"{path.relative_to(REPO_ROOT)}:{index}", document))
    return documents


DOCUMENTS = manifest_documents()
DOCUMENT_IDS = [name for name, _ in DOCUMENTS]


def strings_in(node: Any, skip_keys: frozenset[str] = frozenset({"serveConfigV2"})) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in skip_keys:
                yield from strings_in(value, skip_keys)
    elif isinstance(node, list):
        for value in node:
            yield from strings_in(value, skip_keys)
    elif isinstance(node, str):
        yield node


def referenced_paths(document: dict[str, Any]) -> set[str]:
    """Repository paths a manifest names: /app/... inside the image, or configs/..., serving/... relative."""
    found: set[str] = set()
    for text in strings_in(document):
        found.update(IMAGE_PATH.findall(text))
        found.update(REPO_RELATIVE_PATH.findall(text))
    return found


def missing_paths(document: dict[str, Any]) -> list[str]:
    return sorted(path for path in referenced_paths(document) if not (REPO_ROOT / path).is_file())


def defines_main(path: Path) -> bool:
    tree = ast.parse(path.read_text(), filename=str(path))
    return any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body)


def entrypoint_script(command: list[str]) -> Path:
    """The repository file a `python -m pkg.mod ...` or `python path/x.py ...` command runs."""
    assert command[0] in {"python", "python3"}, f"not a python entrypoint: {command}"
    if command[1] == "-m":
        return REPO_ROOT / (command[2].replace(".", "/") + ".py")
    return REPO_ROOT / command[1].removeprefix(f"{IMAGE_ROOT}/")


def containers(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if isinstance(document, dict):
        for key, value in document.items():
            if key == "containers":
                yield from value
            else:
                yield from containers(value)
    elif isinstance(document, list):
        for value in document:
            yield from containers(value)


def documents_of(kind: str) -> list[dict[str, Any]]:
    return [document for _, document in DOCUMENTS if document["kind"] == kind]


def test_every_expected_kind_is_present() -> None:
    kinds = {document["kind"] for _, document in DOCUMENTS}
    assert {"RayJob", "RayService", "SparkApplication"} <= kinds, kinds


@pytest.mark.parametrize(("name", "document"), DOCUMENTS, ids=DOCUMENT_IDS)
def test_kind_api_version_and_referenced_paths(name: str, document: dict[str, Any]) -> None:
    kind = document["kind"]
    assert kind in EXPECTED_API_VERSIONS, f"{name}: unexpected kind {kind}"
    assert document["apiVersion"] == EXPECTED_API_VERSIONS[kind], f"{name}: apiVersion"
    assert document["metadata"]["name"].startswith("serendipity"), name
    assert missing_paths(document) == [], f"{name} names files absent from the repository"


@pytest.mark.parametrize(("name", "document"), DOCUMENTS, ids=DOCUMENT_IDS)
def test_images_and_secrets_come_from_the_environment(name: str, document: dict[str, Any]) -> None:
    if document["kind"] not in WORKLOAD_KINDS:
        return
    found = list(containers(document)) or [document["spec"]]  # a SparkApplication has no containers list
    for container in found:
        assert container["image"] == IMAGE_PLACEHOLDER, f"{name}: image must be {IMAGE_PLACEHOLDER}"
        for variable in container.get("env", []):
            if SECRET_LIKE_ENV.search(variable["name"]):
                assert "valueFrom" in variable and "value" not in variable, f"{name}: {variable['name']}"


def test_the_checker_reports_a_wrong_path() -> None:
    assert missing_paths({"spec": {"entrypoint": "python -m x --config /app/configs/no-such.yaml"}}) == [
        "configs/no-such.yaml"
    ]
    assert missing_paths({"spec": {"mainApplicationFile": "local:///app/spark_jobs/nope.py"}}) == [
        "spark_jobs/nope.py"
    ]


def test_ray_job_entrypoints_run_repository_mains() -> None:
    modules = set()
    for job in documents_of("RayJob"):
        command = shlex.split(job["spec"]["entrypoint"])
        script = entrypoint_script(command)
        assert script.is_file() and defines_main(script), f"{job['metadata']['name']}: {script}"
        modules.add(command[2] if command[1] == "-m" else script.stem)
        assert "--config" in command
    assert modules >= EXPECTED_RAY_JOB_MODULES


def test_finetune_rayjob_runs_ddp_workers_on_gpus_in_bf16_with_lora() -> None:
    from ray_jobs import finetune

    (job,) = [d for d in documents_of("RayJob") if d["metadata"]["name"] == "serendipity-finetune"]
    argv = shlex.split(job["spec"]["entrypoint"])[3:]  # after python -m ray_jobs.finetune
    at = argv.index("--config") + 1
    argv[at] = str(REPO_ROOT / argv[at].removeprefix(f"{IMAGE_ROOT}/"))
    mllm = finetune.config_of(finetune.parse_options(argv)).mllm
    assert mllm.use_gpu and mllm.num_workers == 2 and mllm.precision == "bf16" and mllm.lora
    (group,) = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    pod_gpus = int(group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
    assert mllm.num_workers * mllm.gpus_per_worker <= group["replicas"] * pod_gpus


def test_spark_applications_run_repository_jobs() -> None:
    render = _load_render()
    applications = documents_of("SparkApplication")
    assert len(applications) == len(render.spark_job_names())
    for application in applications:
        spec = application["spec"]
        script = REPO_ROOT / spec["mainApplicationFile"].removeprefix(f"local://{IMAGE_ROOT}/")
        assert script.is_file() and defines_main(script), script
        assert spec["type"] == "Python" and spec["arguments"][0] == "--config"


def test_ray_jobs_are_rendered_from_the_template() -> None:
    render = _load_render()
    generated = set(render.rendered())
    assert sorted(INFRA.glob("kuberay/rayjob-*.yaml")) == sorted(job.path for job in render.RAY_JOBS)
    assert {job.path for job in render.RAY_JOBS} <= generated
    assert len(documents_of("RayJob")) == len(render.RAY_JOBS)
    ray_stages = stages_on(Engine.RAY)
    assert {f"ray_jobs.{job.job}" for job in render.RAY_JOBS} == {stage.job_module for stage in ray_stages}


def test_rayservice_serves_serving_config_verbatim() -> None:
    (service,) = documents_of("RayService")
    serve_config_text = (REPO_ROOT / "serving" / "config.yaml").read_text()
    assert service["spec"]["serveConfigV2"] == _load_render().cluster_serve_config()
    changed = set(service["spec"]["serveConfigV2"].splitlines()) ^ set(serve_config_text.splitlines())
    assert changed == {"  port: 8000", "  port: 8001"}  # the proxy's port (behind the front), nothing else
    for application in yaml.safe_load(serve_config_text)["applications"]:
        module_name, attribute = application["import_path"].split(":")
        assert callable(getattr(importlib.import_module(module_name), attribute)), application["import_path"]


def test_ray_pods_take_serves_throughput_environment() -> None:
    from serving.settings import THROUGHPUT_ENV

    (service,) = documents_of("RayService")
    for container in containers(service):
        if not container["name"].startswith("ray-"):
            continue  # the admission sidecar runs no Ray
        environment = {entry["name"]: entry.get("value") for entry in container.get("env", [])}
        assert {name: environment.get(name) for name in THROUGHPUT_ENV} == THROUGHPUT_ENV, container["name"]


def test_generated_manifests_are_up_to_date() -> None:
    for path, text in _load_render().rendered().items():
        assert path.read_text() == text, f"{path} is stale: run python infra/render.py"


def test_manifest_commands_exist_in_the_cli() -> None:
    from typer.testing import CliRunner

    from serendipity.app.cli import app

    commands = [
        container
        for _, document in DOCUMENTS
        for container in containers(document)
        if container.get("command", [""])[0] == "serendipity"
    ]
    subcommands = {tuple(container["command"][1:3]) for container in commands}
    assert subcommands == {("features", "apply"), ("features", "materialize"), ("serve", "admission")}
    for container in commands:
        result = CliRunner().invoke(app, [*container["command"][1:3], "--help"])
        assert result.exit_code == 0, result.output


def test_cluster_config_loads_and_uses_the_prod_feature_store() -> None:
    from serendipity.config import load_config
    from serendipity.feature_store import feature_store_yaml

    config = load_config(INFRA / "configs" / "cluster.yaml")
    assert feature_store_yaml(config) == INFRA / "feast" / "prod" / "feature_store.yaml"
    assert feature_store_yaml(config).is_file()


def test_dockerfile_builds_a_non_root_image_without_secrets() -> None:
    dockerfile = (INFRA / "docker" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.MULTILINE)
    assert "openjdk-17" in dockerfile and "-c constraints.txt" in dockerfile
    assert f"WORKDIR {IMAGE_ROOT}" in dockerfile
    users = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert not re.search(r"^(ENV|ARG)\s.*(TOKEN|PASSWORD|SECRET)", dockerfile, re.MULTILINE | re.IGNORECASE)
    ignored = (INFRA / "docker" / "Dockerfile.dockerignore").read_text().split()
    assert {".git", ".venv", "data"} <= set(ignored)


def _submit(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SUBMIT), *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )


def test_submit_script_parses_and_prints_usage() -> None:
    assert subprocess.run(["bash", "-n", str(SUBMIT)], capture_output=True).returncode == 0
    no_args = _submit()
    assert no_args.returncode == 2 and "usage:" in no_args.stderr
    unknown = _submit("no_such_job", SPARK_MASTER="local[1]")
    assert unknown.returncode == 2 and "unknown Spark job 'no_such_job'" in unknown.stderr
    no_master = _submit("aggregates", SPARK_MASTER="")
    assert no_master.returncode == 2 and "SPARK_MASTER" in no_master.stderr


def test_submit_script_runs_the_stage_tables_spark_jobs() -> None:
    usage = _submit("--help")
    line = next(line for line in usage.stdout.splitlines() if line.startswith("JOB is one of:"))
    assert sorted(line.removeprefix("JOB is one of:").split()) == sorted(spark_job_names())


def test_submit_script_builds_the_spark_submit_command(tmp_path: Path) -> None:
    fake = tmp_path / "fake-spark-submit"
    # Prints its arguments, one a line, then the names in the --py-files zip.
    fake.write_text(
        '#!/usr/bin/env bash\nprintf "%s\\n" "$@"\npython3 -m zipfile -l "$4" | awk \'{print $1}\'\n'
    )
    fake.chmod(0o755)
    result = _submit("aggregates", "--config", "x.yaml", SPARK_MASTER="local[2]", SPARK_SUBMIT=str(fake))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == ["--master", "local[2]", "--py-files"]
    assert lines[4:7] == [str(REPO_ROOT / "spark_jobs" / "aggregates.py"), "--config", "x.yaml"]
    assert {"serendipity/__init__.py", "spark_jobs/common.py"} <= set(lines)


def test_readme_names_existing_files() -> None:
    readme = (INFRA / "README.md").read_text()
    pattern = r"(?<![\w/.])((?:infra|serving|configs|tests)/[\w./-]+\.(?:py|yaml|sh|md))"
    named = set(re.findall(pattern, readme))
    assert "infra/spark/submit.sh" in named
    assert sorted(path for path in named if not (REPO_ROOT / path).is_file()) == []


def pod_templates(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod template) of each pod a RayJob or RayService starts: the head and each worker group."""
    cluster = document["spec"]["rayClusterSpec"]
    yield "head", cluster["headGroupSpec"]["template"]
    for group in cluster["workerGroupSpecs"]:
        yield group["groupName"], group["template"]


def selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = policy["spec"]["podSelector"].get("matchLabels", {})
    return all(labels.get(key) == value for key, value in wanted.items())


def test_the_namespace_denies_ingress_by_default() -> None:
    policies = documents_of("NetworkPolicy")
    default_deny = [
        policy
        for policy in policies
        if policy["spec"]["podSelector"] == {}
        and "Ingress" in policy["spec"]["policyTypes"]
        and not policy["spec"].get("ingress")
    ]
    assert default_deny, "no default-deny NetworkPolicy for the namespace"


@pytest.mark.parametrize("kind", ["RayJob", "RayService"])
def test_every_ray_pod_is_labelled_and_covered_by_its_own_policy(kind: str) -> None:
    """The RayJobs' clusters had no pod labels and no policy: any pod could reach their dashboard and
    Jobs API (8265) and run code with the Redis secret and the data volume."""
    specific = [p for p in documents_of("NetworkPolicy") if p["spec"]["podSelector"].get("matchLabels")]
    for document in documents_of(kind):
        for where, template in pod_templates(document):
            labels = template.get("metadata", {}).get("labels", {})
            covering = [policy for policy in specific if selects(policy, labels)]
            assert covering, f"{document['metadata']['name']} {where}: no NetworkPolicy selects {labels}"
            for policy in covering:
                for rule in policy["spec"]["ingress"]:
                    ports = {port["port"] for port in rule.get("ports", [])}
                    if 8265 in ports or not rule.get("from"):
                        # the dashboard only to the operator; no open rule but the Serve front's port
                        assert rule.get("from") or ports == {8000}, (policy["metadata"]["name"], rule)


def test_the_operator_rules_are_pinned_to_the_operators_namespace() -> None:
    for policy in documents_of("NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                if "namespaceSelector" in peer:
                    assert peer["namespaceSelector"].get("matchLabels"), (policy["metadata"]["name"], peer)
                    assert "podSelector" in peer  # that namespace's operator pods, not all its pods


def test_ray_jobs_are_submitted_by_the_operator_over_http() -> None:
    for document in documents_of("RayJob"):
        assert document["spec"]["submissionMode"] == "HTTPMode", document["metadata"]["name"]


@pytest.mark.parametrize(("name", "document"), DOCUMENTS, ids=DOCUMENT_IDS)
def test_containers_run_locked_down(name: str, document: dict[str, Any]) -> None:
    """No privilege escalation, no capabilities, a read-only root file system (writes go to volumes)."""
    if document["kind"] not in WORKLOAD_KINDS:
        return
    if document["kind"] == "SparkApplication":
        found = [document["spec"]["driver"], document["spec"]["executor"]]
    else:
        found = list(containers(document))
    assert found, name
    for container in found:
        security = container.get("securityContext", {})
        assert security.get("allowPrivilegeEscalation") is False, name
        assert security.get("readOnlyRootFilesystem") is True, name
        assert security.get("capabilities", {}).get("drop") == ["ALL"], name
        mounts = {mount["mountPath"] for mount in container.get("volumeMounts", [])}
        assert "/tmp" in mounts, f"{name}: a read-only root needs a writable /tmp"


def test_the_public_front_listens_where_the_ingress_checks_the_token() -> None:
    """The sidecar listens on serving.host of the cluster config, which the ingress replicas read:
    beyond loopback they refuse to start without the token."""
    from serendipity.config import load_config

    (service,) = documents_of("RayService")
    sidecars = [c for c in containers(service) if c["name"] == "admission"]
    assert len(sidecars) == 2  # the head pod's and the worker pods'
    assert load_config(INFRA / "configs" / "cluster.yaml").serving.host == "0.0.0.0"
    for sidecar in sidecars:
        assert "--listen" not in sidecar["command"]
        assert any(variable["name"] == "SERENDIPITY_API_TOKEN" for variable in sidecar["env"])


def test_the_explorer_media_are_rendered_by_the_inference_job() -> None:
    """The RayService decodes no media: the infer RayJob renders them after inference, to the volume."""
    from typer.testing import CliRunner

    from serendipity.app.cli import app

    (infer,) = [job for job in documents_of("RayJob") if job["metadata"]["name"] == "serendipity-infer"]
    _, then = infer["spec"]["entrypoint"].split(" && ")
    command = shlex.split(then)
    assert command[:3] == ["serendipity", "explore", "render"] and "--config" in command
    assert CliRunner().invoke(app, [*command[1:3], "--help"]).exit_code == 0


MONITORING = INFRA / "monitoring"
METRICS_PORTS = {8080, 8404}  # Ray's metrics export port, the admission sidecar's HAProxy exporter


def _promtool(*args: str) -> subprocess.CompletedProcess:
    import shutil

    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (apt-get install prometheus; .ci/run does)")
    return subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=MONITORING, timeout=60)


def test_the_alert_rules_pass_promtool_and_fire_on_their_series() -> None:
    checked = _promtool("check", "rules", "alerts.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", "alerts.test.yaml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def _exported_names() -> set[str]:
    """The names Prometheus sees for serving/metrics.py's metrics (Ray adds ray_, counters _total)."""
    from ray.util.metrics import Counter, Histogram

    import serving.metrics as metrics

    created = metrics._created()
    names = set()
    for metric in vars(created).values():
        name = f"ray_{metric._name}"
        if isinstance(metric, Counter):
            names.add(f"{name}_total")
        elif isinstance(metric, Histogram):
            names.update(f"{name}_{suffix}" for suffix in ("bucket", "count", "sum"))
        else:
            names.add(name)
    return names


def test_dashboard_and_alerts_query_only_metrics_that_exist() -> None:
    import json

    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    rules = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    expressions += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    used = {name for expr in expressions for name in re.findall(r"\bray_serendipity_\w+", expr)}
    assert used and used <= _exported_names(), used - _exported_names()
    titles = " ".join(panel["title"] for panel in dashboard["panels"])
    for topic in ("source", "shed", "latency", "Feature reads", "store age", "versions", "gate", "Batch"):
        assert topic.lower() in titles.lower(), topic


def test_only_the_monitoring_namespace_scrapes_and_only_the_metrics_ports() -> None:
    (policy,) = [p for p in documents_of("NetworkPolicy") if p["metadata"]["name"] == "serendipity-ray"]
    to_metrics = [
        rule
        for rule in policy["spec"]["ingress"]
        if {port["port"] for port in rule.get("ports", [])} & METRICS_PORTS
    ]
    assert len(to_metrics) == 1, to_metrics
    (rule,) = to_metrics
    assert {port["port"] for port in rule["ports"]} == METRICS_PORTS
    (peer,) = rule["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    assert peer["podSelector"]["matchLabels"]


def test_the_rayservice_exposes_the_metrics_ports_and_logs_json() -> None:
    from serendipity.config import load_config

    (service,) = documents_of("RayService")
    admission = load_config(INFRA / "configs" / "cluster.yaml").serving.admission
    assert admission.metrics_port == 8404 and admission.metrics_host == "0.0.0.0"
    cluster = service["spec"]["rayClusterSpec"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    assert all(group["rayStartParams"]["metrics-export-port"] == "8080" for group in groups)
    for container in containers(service):
        ports = {port["containerPort"] for port in container.get("ports", [])}
        wanted = admission.metrics_port if container["name"] == "admission" else 8080
        assert wanted in ports, container["name"]
    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert all(app["logging_config"]["encoding"] == "JSON" for app in serve_config["applications"])

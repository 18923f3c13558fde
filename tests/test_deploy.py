"""The deploy files (deploy/), checked with the tools that read them: `podman-compose config`
and the compose specification's JSON schema for deploy/compose.yaml, `promtool check config`
for deploy/prometheus.yml, kubernetes-validate (the Kubernetes API schemas, strict) for
deploy/kubernetes/. And what no schema knows: every variable given to an appliance is one of its
settings, the probes, ports and grace periods agree with what the appliance does."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

import pytest
import yaml

from appliance import supervise
from appliance.core import config
from appliance.core.config import VARIABLES, Settings

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
IN_CI = os.environ.get("CI", "").lower() == "true"
IMAGE_DATA_DIR = "/var/lib/simple-time-service"  # the image's DATA_DIR (Dockerfile)
IMAGE_USER = 10001  # the image's USER (Dockerfile)
COMPOSE_ENV = {"POSTGRES_PASSWORD": "composepw1", "API_TOKEN": "compose-token"}
# Kubernetes versions the manifests must be valid for: the oldest still supported by the big
# providers and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
KNOWN_VARIABLES = {name for name, _, _ in VARIABLES}


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (required when CI=true)")
    pytest.skip(reason)


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        unavailable(f"{name} not found")
    return found


def run(command: list[str], env: Mapping[str, str] | None = None, timeout: float = 60):
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, **(env or {})} if env is not None else None)


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def unknown_variables(names: set[str], values: Mapping[str, str]) -> set[str]:
    """Names that are no setting. A name another value refers to as $(NAME) (Kubernetes expands
    those) only exists to compose that value, and counts as known."""
    referenced = {ref for value in values.values() for ref in re.findall(r"\$\((\w+)\)", value)}
    return names - KNOWN_VARIABLES - referenced


def worst_case_stop_s(env: Mapping[str, str]) -> int:
    """Seconds supervisord may take to stop every program of an appliance with this
    environment: it stops them one after the other, each within its stopwaitsecs."""
    settings = Settings.from_env(env)
    up_env, programs = supervise.up_environment(settings, {})
    parser = configparser.RawConfigParser()
    parser.read_string(supervise.supervisord_config(programs))
    total = 0
    for program in programs:
        raw = parser.get(f"program:{program}", "stopwaitsecs").split(";")[0].strip()
        total += int(re.sub(r"%\(ENV_(\w+)\)s", lambda m: up_env[m.group(1)], raw))
    return total


def duration_s(text: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([hms])", text))


# --- deploy/compose.yaml -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose(tmp_path_factory) -> dict[str, Any]:
    """`podman-compose config`: the file as the compose tool reads it, variables substituted."""
    tool("podman")  # podman-compose asks `podman version` first
    result = run([tool("podman-compose"), "-f", str(DEPLOY / "compose.yaml"), "config"], COMPOSE_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    resolved = tmp_path_factory.mktemp("compose") / "resolved.yaml"
    resolved.write_text(result.stdout)
    config = yaml.safe_load(result.stdout)
    config["_path"] = resolved
    return config


def appliances(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: service for name, service in compose["services"].items()
            if service.get("image", "").startswith("simple-time-service")}


def test_compose_file_is_read_by_a_compose_tool(compose):
    assert set(compose["services"]) == {"appliance-1", "appliance-2", "kafka", "postgres",
                                        "prometheus", "otel-collector"}
    for name, service in appliances(compose).items():
        env = service["environment"]
        assert env["APPLIANCE_PROGRAMS"] == "api,consumer,agent"
        assert env["KAFKA_BROKERS"] == "kafka:9092"
        assert env["DATABASE_URL"] == "postgresql://sts:composepw1@postgres:5432/sts"
        assert env["API_TOKEN"] == "compose-token"
        assert service["read_only"] is True
        assert service["volumes"] == [f"{name}-data:{IMAGE_DATA_DIR}"]
        assert service["build"]["context"] == str(REPO)
    assert compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] == "composepw1"


@pytest.mark.parametrize("missing", sorted(COMPOSE_ENV))
def test_compose_file_refuses_to_run_without_its_secrets(missing):
    tool("podman")
    env = {k: v for k, v in os.environ.items() if k not in COMPOSE_ENV}
    env.update({k: v for k, v in COMPOSE_ENV.items() if k != missing})
    result = subprocess.run([tool("podman-compose"), "-f", str(DEPLOY / "compose.yaml"), "config"],
                            capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    assert result.returncode != 0
    assert f"required variable {missing} is missing a value" in result.stderr, result.stderr[-2000:]


def test_compose_file_and_its_resolved_form_follow_the_compose_specification(compose):
    # check-jsonschema carries the compose specification's schema (vendor.compose-spec).
    for path in (DEPLOY / "compose.yaml", compose["_path"]):
        result = run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)])
        assert result.returncode == 0, f"{path}:\n{result.stdout}{result.stderr}"


def test_the_schema_check_catches_a_misspelt_key(tmp_path):
    bad = tmp_path / "compose.yaml"
    bad.write_text((DEPLOY / "compose.yaml").read_text().replace("read_only: true", "readonly: true"))
    result = run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(bad)])
    assert result.returncode == 1 and "'readonly' was unexpected" in result.stdout, result.stdout


def test_compose_appliances_set_only_known_settings(compose):
    for name, service in appliances(compose).items():
        env = service["environment"]
        assert unknown_variables(set(env), env) == set(), name
        config.check_programs(Settings.from_env(env), "APPLIANCE_PROGRAMS")  # and valid ones


def test_compose_grace_period_covers_the_slowest_graceful_stop(compose):
    for name, service in appliances(compose).items():
        worst = worst_case_stop_s(service["environment"])
        assert worst == 50  # api 20 (0 + 10 + 5 + 5), agent 10, consumer 20
        assert duration_s(service["stop_grace_period"]) >= worst, name


def test_prometheus_config_passes_promtool_and_scrapes_both_appliances(compose):
    result = run([tool("promtool"), "check", "config", str(DEPLOY / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    wanted = []
    for name, service in appliances(compose).items():
        settings = Settings.from_env(service["environment"])
        # Only the public port is published; /metrics is scraped on the admin listener, which
        # must listen on the container's address for Prometheus to reach it.
        assert [p.split(":")[-1] for p in service["ports"]] == [str(settings.port)]
        assert settings.admin_host == "0.0.0.0" and settings.admin_port
        wanted.append(f"{name}:{settings.admin_port}")
    assert targets == wanted


def test_appliances_send_traces_to_the_collectors_otlp_receiver(compose):
    collector = yaml.safe_load((DEPLOY / "otel-collector.yaml").read_text())
    for kind in ("receivers", "processors", "exporters"):
        for pipeline in collector["service"]["pipelines"].values():
            assert set(pipeline[kind]) <= set(collector[kind]), kind
    grpc_port = collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].rsplit(":", 1)[1]
    assert "otel-collector" in compose["services"]
    for service in appliances(compose).values():
        env = service["environment"]
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://otel-collector:{grpc_port}"


# --- deploy/kubernetes/ --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    """kind -> the one object of that kind."""
    objects: dict[str, dict[str, Any]] = {}
    for path in MANIFESTS:
        for doc in load_all(path):
            assert doc["kind"] not in objects, f"a second {doc['kind']} in {path.name}"
            objects[doc["kind"]] = doc
    assert set(objects) == {"ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget"}
    return objects


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_are_valid_kubernetes_objects(version):
    result = run([tool("kubernetes-validate"), "--strict", "-k", version, *map(str, MANIFESTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed for resource") == len(MANIFESTS), result.stdout


def test_the_kubernetes_check_catches_a_misspelt_field(tmp_path):
    bad = tmp_path / "deployment.yaml"
    bad.write_text((DEPLOY / "kubernetes" / "deployment.yaml").read_text()
                   .replace("readOnlyRootFilesystem", "readOnlyRootFileSystem"))
    result = run([tool("kubernetes-validate"), "--strict", str(bad)])
    assert result.returncode != 0 and "readOnlyRootFileSystem" in result.stdout + result.stderr


def container(manifests) -> dict[str, Any]:
    (only,) = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only


def pod_environment(manifests) -> dict[str, str]:
    """The container's variables with a literal value: the ConfigMap's, then env's values."""
    env = dict(manifests["ConfigMap"]["data"])
    env.update({item["name"]: item["value"] for item in container(manifests)["env"] if "value" in item})
    return env


def test_pods_set_only_known_settings(manifests):
    spec = container(manifests)
    assert spec["envFrom"] == [{"configMapRef": {"name": manifests["ConfigMap"]["metadata"]["name"]}}]
    names = set(manifests["ConfigMap"]["data"]) | {item["name"] for item in spec["env"]}
    values = {item["name"]: item["value"] for item in spec["env"] if "value" in item}
    assert unknown_variables(names, values) == set()
    Settings.from_env(pod_environment(manifests))  # every literal value is valid


def test_pod_and_host_ip_come_from_the_downward_api(manifests):
    refs = {item["name"]: item["valueFrom"]["fieldRef"]["fieldPath"]
            for item in container(manifests)["env"] if "fieldRef" in item.get("valueFrom", {})}
    assert refs["POD_IP"] == "status.podIP" and refs["HOST_IP"] == "status.hostIP"


def test_secrets_come_from_the_secret_and_the_database_url_is_composed_from_them(manifests):
    secret = manifests["Secret"]
    env = container(manifests)["env"]
    from_secret = {item["name"]: item["valueFrom"]["secretKeyRef"] for item in env
                   if "secretKeyRef" in item.get("valueFrom", {})}
    assert set(from_secret) == {"API_TOKEN", "DB_PASSWORD"}
    for name, ref in from_secret.items():
        assert ref == {"name": secret["metadata"]["name"], "key": name}
        assert name in secret["stringData"]
    assert "API_TOKEN" not in manifests["ConfigMap"]["data"]
    order = [item["name"] for item in env]
    url = next(item["value"] for item in env if item["name"] == "DATABASE_URL")
    assert url == "postgresql://sts:$(DB_PASSWORD)@postgres:5432/sts"
    # Kubernetes expands $(NAME) only from variables defined before it.
    assert order.index("DB_PASSWORD") < order.index("DATABASE_URL")
    Settings.from_env({"API_TOKEN": secret["stringData"]["API_TOKEN"]})  # a valid token


def test_probes_ask_healthz_for_liveness_and_readyz_for_readiness(manifests):
    spec = container(manifests)
    port, admin = spec["ports"]
    assert port["containerPort"] == Settings.from_env(pod_environment(manifests)).port
    assert admin["containerPort"] == Settings.from_env(pod_environment(manifests)).admin_port
    assert spec["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert spec["startupProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    # /readyz goes 503 for SHUTDOWN_DELAY: readiness must notice within it.
    readiness = spec["readinessProbe"]
    settings = Settings.from_env(pod_environment(manifests))
    assert settings.shutdown_delay > 0
    assert readiness["periodSeconds"] * readiness["failureThreshold"] <= settings.shutdown_delay


def test_termination_grace_period_covers_shutdown_delay_and_the_slowest_graceful_stop(manifests):
    env = pod_environment(manifests)
    worst = worst_case_stop_s(env)
    assert worst == 55  # api 25 (SHUTDOWN_DELAY 5 + SHUTDOWN_TIMEOUT 10 + 5 + 5), agent 10, consumer 20
    grace = manifests["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= worst


def test_pods_run_as_the_image_user_read_only_with_data_dir_on_an_empty_dir(manifests):
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    spec = container(manifests)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == IMAGE_USER
    assert pod["securityContext"]["fsGroup"] == IMAGE_USER  # the emptyDir is writable for it
    assert spec["securityContext"] == {"allowPrivilegeEscalation": False,
                                       "readOnlyRootFilesystem": True,
                                       "capabilities": {"drop": ["ALL"]}}
    data_dir = str(Settings.from_env(pod_environment(manifests)).data_dir)
    assert data_dir == IMAGE_DATA_DIR
    (mount,) = spec["volumeMounts"]
    assert mount["mountPath"] == data_dir
    (volume,) = pod["volumes"]
    assert volume["name"] == mount["name"] and "emptyDir" in volume


def test_pods_have_requests_and_limits(manifests):
    resources = container(manifests)["resources"]
    for kind in ("cpu", "memory"):
        assert resources["requests"][kind] and resources["limits"][kind], kind


def test_service_and_disruption_budget_select_the_deployments_pods(manifests):
    deployment = manifests["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert manifests["Service"]["spec"]["selector"].items() <= labels.items()
    assert manifests["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (port,) = manifests["Service"]["spec"]["ports"]
    assert port["targetPort"] == container(manifests)["ports"][0]["name"]
    assert manifests["PodDisruptionBudget"]["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_the_image_tag_is_this_version(manifests):
    version = (REPO / "VERSION").read_text().strip()
    assert container(manifests)["image"] == f"simple-time-service:{version}"

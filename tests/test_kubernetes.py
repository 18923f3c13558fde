"""deploy/kubernetes/: each overlay rendered offline with `kubectl kustomize`, every object
validated (kubernetes-validate --strict for two Kubernetes versions; the Prometheus Operator's
objects against the CRD schemas vendored in tests/crds/), and what no schema knows: the
variables are settings, the probes ask what each role answers, the grace periods cover the
slowest graceful stop, the selectors, ports and names agree."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from deploy_helpers import (
    DEPLOY,
    IMAGE_DATA_DIR,
    IMAGE_USER,
    REPO,
    run,
    tool,
    unknown_variables,
    worst_case_stop_s,
)

from appliance.core import config
from appliance.core.config import Settings

KUSTOMIZE = DEPLOY / "kubernetes"
OVERLAYS = ("single", "scale-out")
# The oldest Kubernetes still supported by the big providers and the newest kubernetes-validate
# knows.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
CRDS = Path(__file__).parent / "crds"  # prometheus-operator v0.93.0 (tests/crds/README.md)
CRD_KINDS = {"PodMonitor", "PrometheusRule"}


def render(directory: Path) -> str:
    result = run([tool("kubectl"), "kustomize", str(directory)])
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, tuple[Path, list[dict[str, Any]]]]:
    """overlay -> (its rendered file, its objects)."""
    out = tmp_path_factory.mktemp("kustomize")
    found = {}
    for overlay in OVERLAYS:
        text = render(KUSTOMIZE / "overlays" / overlay)
        path = out / f"{overlay}.yaml"
        path.write_text(text)
        found[overlay] = (path, [doc for doc in yaml.safe_load_all(text) if doc])
    return found


def objects(rendered, overlay: str, kind: str | None = None) -> list[dict[str, Any]]:
    return [o for o in rendered[overlay][1] if kind is None or o["kind"] == kind]


def one(rendered, overlay: str, kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [o for o in objects(rendered, overlay, kind)
                if name is None or o["metadata"]["name"] == name]
    return found


def workloads(rendered) -> list[tuple[str, dict[str, Any]]]:
    return [(overlay, o) for overlay in OVERLAYS for o in objects(rendered, overlay)
            if o["kind"] in ("StatefulSet", "Deployment")]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    return only


def environment(rendered, overlay: str, workload: dict[str, Any]) -> dict[str, str]:
    """The container's variables with a literal value: the ConfigMap's, then its env's."""
    env = dict(one(rendered, overlay, "ConfigMap")["data"])
    env.update({e["name"]: e["value"] for e in container(workload)["env"] if "value" in e})
    return env


def role(workload: dict[str, Any]) -> str:
    return workload["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]


def test_the_overlays_are_the_two_layouts(rendered):
    kinds = {overlay: sorted(o["kind"] for o in objects(rendered, overlay)) for overlay in OVERLAYS}
    assert kinds["single"] == ["ConfigMap", "NetworkPolicy", "PodMonitor", "PrometheusRule",
                               "Service", "Service", "StatefulSet"]
    assert kinds["scale-out"] == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler",
                                  "NetworkPolicy", "PodDisruptionBudget", "PodDisruptionBudget",
                                  "PodMonitor", "PrometheusRule", "Secret", "Service", "Service",
                                  "StatefulSet"]
    assert sorted((overlay, role(w)) for overlay, w in workloads(rendered)) == [
        ("scale-out", "api"), ("scale-out", "consumer"), ("single", "api")]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_for_kubernetes(rendered, overlay, version):
    path, docs = rendered[overlay]
    result = run([tool("kubernetes-validate"), "--strict", "-k", version, str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    core = [o for o in docs if o["kind"] not in CRD_KINDS]
    assert result.stdout.count("passed for resource") == len(core), result.stdout


def crd_schema(kind: str) -> dict[str, Any]:
    """The CRD's v1 schema, strict: an object with properties takes no other key (the API server
    would silently prune it; kubectl apply --validate=strict refuses it)."""
    plural = {"PodMonitor": "podmonitors", "PrometheusRule": "prometheusrules"}[kind]
    crd = yaml.safe_load((CRDS / f"monitoring.coreos.com_{plural}.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return _strict(version["schema"]["openAPIV3Schema"])


def _strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        if schema.get("x-kubernetes-int-or-string"):
            schema.pop("type", None)
            schema["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    elif isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


def crd_errors(document: dict[str, Any]) -> list[str]:
    schema = crd_schema(document["kind"])
    body = {k: v for k, v in document.items() if k != "metadata"}  # metadata: the API's own
    return [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(body)]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_prometheus_operator_objects_follow_their_crd_schemas(rendered, overlay):
    found = [o for o in objects(rendered, overlay) if o["kind"] in CRD_KINDS]
    assert sorted(o["kind"] for o in found) == sorted(CRD_KINDS)
    for document in found:
        assert document["apiVersion"] == "monitoring.coreos.com/v1"
        assert crd_errors(document) == [], document["kind"]


def test_the_crd_check_catches_a_misspelt_field(rendered):
    monitor = one(rendered, "single", "PodMonitor")
    bad = {**monitor, "spec": {**monitor["spec"], "podMetricEndpoints": []}}
    assert any("podMetricEndpoints" in message for message in crd_errors(bad))


def test_the_kubernetes_check_catches_a_misspelt_field(tmp_path, rendered):
    bad = tmp_path / "single.yaml"
    bad.write_text(rendered["single"][0].read_text()
                   .replace("readOnlyRootFilesystem", "readOnlyRootFileSystem"))
    result = run([tool("kubernetes-validate"), "--strict", str(bad)])
    assert result.returncode != 0 and "readOnlyRootFileSystem" in result.stdout + result.stderr


def test_the_ingress_component_renders_in_front_of_the_service(tmp_path):
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(KUSTOMIZE / "overlays" / "scale-out", tmp_path)],
        "components": [os.path.relpath(KUSTOMIZE / "components" / "ingress", tmp_path)]}))
    docs = [d for d in yaml.safe_load_all(render(tmp_path)) if d]
    (ingress,) = [d for d in docs if d["kind"] == "Ingress"]
    (service,) = [d for d in docs
                  if d["kind"] == "Service" and d["metadata"]["name"] == "simple-time-service"]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "simple-time-service", "port": {"name": service["spec"]["ports"][0]["name"]}}
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all([ingress]))
    result = run([tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSIONS[-1], str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_pods_set_only_known_and_valid_settings(rendered):
    for overlay, workload in workloads(rendered):
        spec = container(workload)
        assert spec["envFrom"] == [{"configMapRef": {"name": "simple-time-service"}}]
        names = set(one(rendered, overlay, "ConfigMap")["data"]) | {e["name"] for e in spec["env"]}
        values = {e["name"]: e["value"] for e in spec["env"] if "value" in e}
        assert unknown_variables(names, values) == set(), workload["metadata"]["name"]
        settings = Settings.from_env(environment(rendered, overlay, workload))
        config.check_programs(settings, "APPLIANCE_PROGRAMS")


def test_each_role_runs_its_programs(rendered):
    programs = {(overlay, role(w)): set(Settings.from_env(environment(rendered, overlay, w)).programs)
                for overlay, w in workloads(rendered)}
    assert programs == {("single", "api"): {"broker", "consumer", "api", "agent"},
                        ("scale-out", "api"): {"api", "agent"},
                        ("scale-out", "consumer"): {"consumer"}}
    single = Settings.from_env(environment(rendered, "single", one(rendered, "single", "StatefulSet")))
    assert single.embedded_broker and not single.database_url.is_postgres


def test_secrets_come_from_the_secret_and_the_database_url_is_composed_from_them(rendered):
    secret = one(rendered, "scale-out", "Secret")
    for overlay, workload in workloads(rendered):
        env = container(workload)["env"]
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env
                if "secretKeyRef" in e.get("valueFrom", {})}
        if overlay == "single":
            assert refs == {}  # its tokens are made on its volume at the first start
            continue
        assert set(refs) == ({"API_TOKENS", "DB_PASSWORD"} if role(workload) == "api" else {"DB_PASSWORD"})
        for name, ref in refs.items():
            assert ref == {"name": secret["metadata"]["name"], "key": name} and name in secret["stringData"]
        order = [e["name"] for e in env]
        url = next(e["value"] for e in env if e["name"] == "DATABASE_URL")
        assert url == "postgresql://sts:$(DB_PASSWORD)@postgres:5432/sts"
        assert order.index("DB_PASSWORD") < order.index("DATABASE_URL")  # $(NAME): defined before
    Settings.from_env({"API_TOKENS": secret["stringData"]["API_TOKENS"]})  # valid tokens


def test_probes_ask_what_each_role_answers(rendered):
    for overlay, workload in workloads(rendered):
        spec, settings = container(workload), Settings.from_env(environment(rendered, overlay, workload))
        ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
        if role(workload) == "api":
            assert ports == {"http": settings.port, "admin": settings.admin_port}
            probed = "http"
            readiness = spec["readinessProbe"]
            # /readyz goes 503 for SHUTDOWN_DELAY: readiness must notice within it.
            assert readiness["periodSeconds"] * readiness["failureThreshold"] <= settings.shutdown_delay
        else:
            assert settings.consumer_health_port and ports == {"health": settings.consumer_health_port}
            probed = "health"
        assert spec["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": probed}
        assert spec["startupProbe"]["httpGet"] == {"path": "/healthz", "port": probed}
        assert spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": probed}


def test_termination_grace_periods_cover_the_slowest_graceful_stop(rendered):
    worst = {}
    for overlay, workload in workloads(rendered):
        stop = worst_case_stop_s(environment(rendered, overlay, workload))
        worst[(overlay, role(workload))] = stop
        assert workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= stop
    # api 25 (SHUTDOWN_DELAY 5 + SHUTDOWN_TIMEOUT 10 + 5 + 5), agent 10, consumer 20, broker 10
    assert worst == {("single", "api"): 65, ("scale-out", "api"): 35, ("scale-out", "consumer"): 20}


def test_data_dir_is_on_a_volume_claim_where_a_spool_or_the_database_lives(rendered):
    for overlay, workload in workloads(rendered):
        pod, spec = workload["spec"]["template"]["spec"], container(workload)
        settings = Settings.from_env(environment(rendered, overlay, workload))
        assert str(settings.data_dir) == IMAGE_DATA_DIR
        (mount,) = spec["volumeMounts"]
        assert mount["mountPath"] == IMAGE_DATA_DIR
        if "api" in settings.programs:  # the spool (and in single, SQLite and the broker's feed)
            assert workload["kind"] == "StatefulSet" and "volumes" not in pod
            (claim,) = workload["spec"]["volumeClaimTemplates"]
            assert claim["metadata"]["name"] == mount["name"]
            assert workload["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"
        else:
            (volume,) = pod["volumes"]
            assert volume["name"] == mount["name"] and "emptyDir" in volume


def test_pods_run_as_the_image_user_read_only_with_requests_and_limits(rendered):
    for _, workload in workloads(rendered):
        pod, spec = workload["spec"]["template"]["spec"], container(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["fsGroup"] == IMAGE_USER
        assert spec["securityContext"] == {"allowPrivilegeEscalation": False,
                                           "readOnlyRootFilesystem": True,
                                           "capabilities": {"drop": ["ALL"]}}
        for kind in ("cpu", "memory"):
            assert spec["resources"]["requests"][kind] and spec["resources"]["limits"][kind]


def selects(selector: dict[str, str], workload: dict[str, Any]) -> bool:
    return selector.items() <= workload["spec"]["template"]["metadata"]["labels"].items()


def test_the_service_sends_requests_to_api_pods_only(rendered):
    for overlay, workload in workloads(rendered):
        service = one(rendered, overlay, "Service", "simple-time-service")
        assert selects(service["spec"]["selector"], workload) == (role(workload) == "api")
        assert selects(workload["spec"]["selector"]["matchLabels"], workload)
        if workload["kind"] == "StatefulSet":
            governing = one(rendered, overlay, "Service", workload["spec"]["serviceName"])
            assert governing["spec"]["clusterIP"] == "None"
            assert selects(governing["spec"]["selector"], workload)
    (port,) = one(rendered, "single", "Service", "simple-time-service")["spec"]["ports"]
    assert port["targetPort"] == "http"


def test_budgets_and_the_autoscaler_take_their_own_workload(rendered):
    by_role = {role(w): w for overlay, w in workloads(rendered) if overlay == "scale-out"}
    budgets = objects(rendered, "scale-out", "PodDisruptionBudget")
    for workload in by_role.values():
        (budget,) = [b for b in budgets if selects(b["spec"]["selector"]["matchLabels"], workload)]
        assert budget["spec"].get("minAvailable", 0) < workload["spec"]["replicas"]
    scaler = one(rendered, "scale-out", "HorizontalPodAutoscaler")
    target = scaler["spec"]["scaleTargetRef"]
    api = by_role["api"]
    assert (target["kind"], target["name"]) == (api["kind"], api["metadata"]["name"])
    assert scaler["spec"]["minReplicas"] == api["spec"]["replicas"] >= 2
    for workload in by_role.values():
        keys = {c["topologyKey"] for c in workload["spec"]["template"]["spec"]["topologySpreadConstraints"]}
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}


def test_the_admin_plane_and_health_port_are_reached_only_from_the_monitoring_namespace(rendered):
    for overlay in OVERLAYS:
        policy = one(rendered, overlay, "NetworkPolicy")
        public, monitoring = policy["spec"]["ingress"]
        assert "from" not in public and public["ports"] == [{"port": "http"}]
        assert monitoring["from"] == [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "monitoring"}}}]
        assert {p["port"] for p in monitoring["ports"]} == {"admin", "health"}
        for name, workload in workloads(rendered):
            if name == overlay:
                assert selects(policy["spec"]["podSelector"]["matchLabels"], workload)


def test_the_pod_monitor_scrapes_metrics_on_a_port_every_pod_has(rendered):
    for overlay in OVERLAYS:
        monitor = one(rendered, overlay, "PodMonitor")
        endpoints = {e["port"]: e["path"] for e in monitor["spec"]["podMetricsEndpoints"]}
        assert endpoints == {"admin": "/metrics", "health": "/metrics"}
        for name, workload in workloads(rendered):
            if name == overlay:
                assert selects(monitor["spec"]["selector"]["matchLabels"], workload)
                assert {p["name"] for p in container(workload)["ports"]} & set(endpoints)


def test_the_prometheus_rule_is_alerts_yml(rendered):
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    for overlay in OVERLAYS:
        assert one(rendered, overlay, "PrometheusRule")["spec"]["groups"] == alerts["groups"]


def test_the_image_tag_is_this_version(rendered):
    version = (REPO / "VERSION").read_text().strip()
    for _, workload in workloads(rendered):
        assert container(workload)["image"] == f"simple-time-service:{version}"

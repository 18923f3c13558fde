"""The compose stack's files (deploy/compose.yaml, deploy/prometheus/prometheus.yml,
deploy/otel-collector.yaml), checked with the tools that read them: `podman-compose config` and
the compose specification's JSON schema, `promtool check config`. And what no schema knows:
every variable given to an appliance is one of its settings, the grace period covers the
slowest graceful stop, Prometheus scrapes the port the appliances serve /metrics on. The stack
started for real: tests/test_compose_stack.py; the Kubernetes files: tests/test_kubernetes.py."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest
import yaml
from deploy_helpers import (
    DEPLOY,
    IMAGE_DATA_DIR,
    REPO,
    duration_s,
    run,
    tool,
    unknown_variables,
    worst_case_stop_s,
)

from appliance.core import config
from appliance.core.config import Settings

COMPOSE_ENV = {"POSTGRES_PASSWORD": "composepw1", "API_TOKEN": "compose-token"}
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"


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
    result = run([tool("promtool"), "check", "config", str(PROMETHEUS)])
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(PROMETHEUS.read_text())
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

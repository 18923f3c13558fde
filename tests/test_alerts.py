"""deploy/prometheus/alerts.yml: promtool checks the rules and runs their unit tests
(alerts.test.yml: for each alert, series that must fire it and series that must not); every
alert says how bad it is, what it means and where its runbook is. Its expressions against a live
appliance: tests/test_grafana.py."""

from __future__ import annotations

import re
import shutil
import sys

import yaml
from deploy_helpers import DEPLOY, REPO, run, tool

ALERTS = DEPLOY / "prometheus" / "alerts.yml"
TESTS = DEPLOY / "prometheus" / "alerts.test.yml"
OPERATIONS = REPO / "docs" / "operations.md"
RUNBOOK = "https://github.com/simple-time-service/simple-time-service/blob/main/docs/operations.md#"
# What the operator asked to be told about (the list), by alert name.
EXPECTED = {"SpoolEventsDropped", "SpoolFilling", "ConsumerLagGrowing", "ConsumerStalled",
            "DeadLettersArriving", "ComponentDown", "HTTPServerErrors",
            "EmbeddedBrokerRecyclingOften", "DiskSpaceLow", "ApplianceScrapeFailing",
            "ApplianceMetricsAbsent"}


def rules() -> list[dict]:
    (group,) = yaml.safe_load(ALERTS.read_text())["groups"]
    return group["rules"]


def test_promtool_accepts_the_rules():
    result = run([tool("promtool"), "check", "rules", str(ALERTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED)} rules found" in result.stdout


def test_every_alert_has_a_unit_test_that_fires_it_and_one_that_does_not():
    tests = yaml.safe_load(TESTS.read_text())["tests"]
    evaluations = [e for t in tests for e in t["alert_rule_test"]]
    fired = {e["alertname"] for e in evaluations if e["exp_alerts"]}
    quiet = {e["alertname"] for e in evaluations if not e["exp_alerts"]}
    assert fired == quiet == EXPECTED


def test_the_unit_tests_pass():
    result = run([tool("promtool"), "test", "rules", str(TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_unit_tests_fail_when_an_alert_changes(tmp_path):
    """promtool test rules can fail: a threshold moved past the tested series is caught."""
    shutil.copy(TESTS, tmp_path / "alerts.test.yml")
    (tmp_path / "alerts.yml").write_text(ALERTS.read_text().replace("> 0.8", "> 0.95"))
    result = run([tool("promtool"), "test", "rules", str(tmp_path / "alerts.test.yml")])
    assert result.returncode != 0 and "SpoolFilling" in result.stdout + result.stderr


def test_every_alert_says_how_bad_what_it_means_and_where_its_runbook_is():
    assert {rule["alert"] for rule in rules()} == EXPECTED
    headings = {re.sub(r"[^a-z0-9-]", "", line[3:].strip().lower().replace(" ", "-"))
                for line in OPERATIONS.read_text().splitlines() if line.startswith("### ")}
    for rule in rules():
        name = rule["alert"]
        assert rule["for"], name
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], name
        assert notes["runbook_url"] == RUNBOOK + name.lower(), name
        assert name.lower() in headings, f"docs/operations.md has no section '### {name}'"


def test_the_generated_files_are_what_deploy_generate_makes():
    result = run([sys.executable, str(DEPLOY / "generate.py"), "--check"])
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(DEPLOY))
    import generate  # deploy/generate.py
    assert generate.RULE.read_text() == generate.prometheus_rule()
    assert generate.GRAFANA.read_text() == generate.grafana_dashboard()

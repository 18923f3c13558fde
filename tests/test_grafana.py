"""deploy/grafana/simple-time-service.json (made from deploy/grafana/panels.py) and the alerts'
expressions, run against a real Prometheus (Debian package) scraping a live appliance under
load: every query parses, every panel returns data, and every series and label a query names is
one the appliance emits (a misspelt name would otherwise be an empty panel nobody notices)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from typing import Any

import pytest
import yaml
from deploy_helpers import DEPLOY, unavailable
from procs import HttpClient, free_port, wait_until
from test_appliance_e2e import Supervised

DASHBOARD = DEPLOY / "grafana" / "simple-time-service.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
GRAFANA_VARIABLES = {"$__rate_interval": "30s", "$__range": "5m"}
GROUPING = r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)"
PROMQL_WORDS = {"by", "without", "and", "or", "unless", "bool", "on", "ignoring", "group_left",
                "group_right", "offset", "inf", "nan"}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panel_queries() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dashboard()["panels"] for t in p.get("targets", [])]


def alert_queries() -> list[tuple[str, str]]:
    (group,) = yaml.safe_load(ALERTS.read_text())["groups"]
    return [(rule["alert"], rule["expr"]) for rule in group["rules"]]


# --- the dashboard's own shape -------------------------------------------------------------------


def test_the_dashboard_covers_what_an_operator_watches():
    text = " ".join(expr for _, expr in panel_queries())
    for series in ("http_requests_total", "http_request_duration_seconds_bucket",
                   "kafka_events_produced_total", "consumer_events_persisted_total",
                   "spool_dropped_total", "spool_depth", "consumer_lag", "dead_letters_total",
                   "component_up", "process_resident_memory_bytes", "process_cpu_seconds"):
        assert series in text, series
    assert "histogram_quantile(0.99" in text


def test_every_panel_asks_the_chosen_prometheus():
    board = dashboard()
    (variable,) = board["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == ("datasource", "datasource",
                                                                       "prometheus")
    titles = [p["title"] for p in board["panels"] if p["type"] != "row"]
    assert len(titles) == len(set(titles))
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


# --- names in a query ----------------------------------------------------------------------------


def names_in(expr: str) -> tuple[set[str], set[str], set[str]]:
    """(series names, labels in matchers, labels grouped by) that a PromQL expression names."""
    matchers = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", expr))
    grouped = {label.strip() for group in re.findall(GROUPING, expr)
               for label in group.split(",") if label.strip()}
    bare = re.sub(r'"[^"]*"', "", expr)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|" + GROUPING, " ", bare)
    series = {word for word in re.findall(r"\b([a-zA-Z_:][\w:]*)\b(?!\s*\()", bare)
              if word.lower() not in PROMQL_WORDS}
    return series, matchers, grouped


def test_names_in_finds_series_and_labels():
    expr = ('sum by (route, status) (rate(http_requests_total{status=~"5.."}[5m])) '
            "/ ignoring(x) histogram_quantile(0.5, sum by (le) (rate(h_bucket[1m]))) > 0.05")
    assert names_in(expr) == ({"http_requests_total", "h_bucket"}, {"status"},
                              {"route", "status", "le", "x"})


# --- against a live appliance ---------------------------------------------------------------------


class Prometheus:
    """A real Prometheus scraping one appliance's admin listener every second, with the alerts."""

    def __init__(self, tmp_path, target: str) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            unavailable("prometheus not installed (Debian package prometheus)")
        self.port = free_port()
        shutil.copy(ALERTS, tmp_path / "alerts.yml")
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [{"job_name": "simple-time-service",
                                "static_configs": [{"targets": [target]}]}]}))
        self.process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{self.port}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.ready, 30, 0.2, "Prometheus ready")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    def api(self, path: str, **query: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(query)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                return json.load(reply)
        except urllib.error.HTTPError as error:  # a bad query: 400 with the parser's message
            return json.load(error)

    def query(self, expr: str) -> dict[str, Any]:
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        return self.api("query", query=expr)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """An appliance under `up` (embedded broker) answering a steady load, scraped for a while."""
    tmp = tmp_path_factory.mktemp("grafana")
    (tmp / "appliance").mkdir()
    app = Supervised(tmp / "appliance").start()
    prometheus = Prometheus(tmp, f"127.0.0.1:{app.env['ADMIN_PORT']}")
    stop = threading.Event()

    def load():
        client = HttpClient("127.0.0.1", app.port)
        while not stop.is_set():
            for path in ("/", "/", "/", "/nope", "/healthz"):
                client.get(path, anonymous=True)
            app.publish("grafana.check", {"n": 1})
            time.sleep(0.05)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    try:
        wait_until(lambda: prometheus.api("query", query="up").get("data", {}).get("result"),
                   30, 0.5, "Prometheus scraping the appliance")
        wait_until(lambda: prometheus.query("max(consumer_lag) >= 0")["data"]["result"]
                   and prometheus.query('sum(increase(http_requests_total{status="404"}[30s])) > 0')
                   ["data"]["result"], 60, 0.5, "the agent's lag and the load in Prometheus")
        time.sleep(10)  # 30 s windows with the load in them
        yield prometheus
    finally:
        stop.set()
        loader.join(10)
        prometheus.stop()
        app.stop()


@pytest.fixture(scope="module")
def emitted(live) -> dict[str, set[str]]:
    """Every series name the appliance emits -> the labels it carries."""
    names = live.api("label/__name__/values")["data"]
    labels: dict[str, set[str]] = {}
    for name in names:
        for series in live.api("series", **{"match[]": name})["data"]:
            labels.setdefault(name, set()).update(series)
    return labels


def assert_names_exist(expr: str, emitted: dict[str, set[str]]) -> None:
    series, matchers, grouped = names_in(expr)
    unknown = series - set(emitted)
    assert not unknown, f"series the appliance does not emit: {sorted(unknown)} in {expr}"
    carried = set().union(*(emitted[name] for name in series)) if series else set()
    missing = (matchers | grouped) - carried
    assert not missing, f"labels none of {sorted(series)} carries: {sorted(missing)} in {expr}"


@pytest.mark.e2e
@pytest.mark.broker
@pytest.mark.parametrize(("title", "expr"), panel_queries())
def test_every_panel_returns_data_from_a_live_appliance(live, emitted, title, expr):
    answer = live.query(expr)
    assert answer["status"] == "success", answer
    result = answer["data"]["result"]
    assert result, f"{title}: no data for {expr}"
    grouped = names_in(expr)[2] - {"le"}
    for series in result:
        assert grouped <= set(series["metric"]), f"{title}: {series['metric']} lacks {grouped}"
    assert_names_exist(expr, emitted)


@pytest.mark.e2e
@pytest.mark.broker
@pytest.mark.parametrize(("alert", "expr"), alert_queries())
def test_every_alert_expression_parses_and_names_what_the_appliance_emits(live, emitted, alert, expr):
    answer = live.query(expr)
    assert answer["status"] == "success", answer
    assert_names_exist(expr, emitted)


@pytest.mark.e2e
@pytest.mark.broker
def test_prometheus_loads_every_alert_and_evaluates_it_without_error(live):
    wait_until(lambda: all(r.get("health") == "ok" for r in rules_of(live)) and rules_of(live),
               20, 0.5, "every rule evaluated")
    assert sorted(r["name"] for r in rules_of(live)) == sorted(a for a, _ in alert_queries())
    firing = {r["name"] for r in rules_of(live) if r["state"] == "firing"}
    assert firing == set(), f"alerts firing on a healthy appliance: {firing}"


def rules_of(live) -> list[dict[str, Any]]:
    return [rule for group in live.api("rules")["data"]["groups"] for rule in group["rules"]]

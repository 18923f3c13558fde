"""/metrics against the real processes: counters equal what happened, labels stay bounded."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid

import pytest
from procs import AUTHORIZATION, IN_CI, Appliance, Broker, free_port, wait_until
from prometheus_client.parser import text_string_to_metric_families


def samples(app: Appliance, accept: str | None = None) -> dict:
    status, body, headers = raw_metrics(app, accept)
    assert status == 200, body
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def raw_metrics(app: Appliance, accept: str | None = None):
    import urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{app.port}/metrics",
                                 headers={**AUTHORIZATION, **({"Accept": accept} if accept else {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def api(tmp_path):
    app = Appliance(tmp_path, None)
    app.start_api()
    yield app
    app.stop()


def test_request_counter_equals_requests_made(api):
    for _ in range(37):
        api.get("/")
    found = samples(api)
    assert value(found, "http_requests_total", method="GET", route="/", status="200") == 37
    assert value(found, "http_request_duration_seconds_count", method="GET", route="/") == 37
    assert value(found, "build_info", version=open("VERSION").read().strip()) == 1


def test_unknown_paths_share_one_label_value(api):
    for _ in range(1000):
        api.get(f"/random/{uuid.uuid4().hex}")
    found = samples(api)
    routes = {dict(labels).get("route") for (name, labels) in found if name == "http_requests_total"}
    assert routes <= {"/", "/healthz", "unmatched"}
    assert value(found, "http_requests_total", method="GET", route="unmatched", status="404") == 1000


def test_openmetrics_when_the_scraper_asks(api):
    status, body, headers = raw_metrics(api, "application/openmetrics-text; version=1.0.0")
    assert status == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")


def test_promtool_accepts_the_exposition(api, tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        if IN_CI:
            pytest.fail("promtool is required in CI (Debian package prometheus)")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    for _ in range(3):
        api.get("/")
    _, body, _ = raw_metrics(api)
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True)
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()


def test_broken_metrics_machinery_is_a_503_and_everything_else_works(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    app = Appliance(tmp_path, None, METRICS_DIR=str(blocker / "metrics"))
    app.start_api()
    try:
        status, body, headers = raw_metrics(app)
        assert status == 503 and json.loads(body)["status"] == 503
        assert headers["Content-Type"] == "application/json"
        assert app.get("/")[0] == 200
    finally:
        app.stop()


@pytest.mark.broker
def test_published_and_persisted_counters_match_exactly(tmp_path):
    broker = Broker(free_port(), tmp_path / "broker.log").start()
    app = Appliance(tmp_path, broker.bootstrap)
    try:
        app.start_api()
        app.consumer.start()
        for i in range(25):
            assert app.publish("audit.check", {"i": i})[0] == 202
        for _ in range(10):
            app.get("/")
        app.wait_rows("custom_events", 25)
        app.wait_rows("http_responses", 35)  # 10 GETs + 25 publishes
        found = wait_until(lambda: (lambda f: f if value(
            f, "consumer_events_persisted_total", table="http_responses") == 35 else None)(samples(app)),
            10, 0.3, "persisted counter at 35")
        assert value(found, "kafka_events_produced_total", event_type="custom", result="queued") == 25
        assert value(found, "kafka_events_produced_total", event_type="http_request", result="queued") == 35
        assert value(found, "consumer_events_persisted_total", table="custom_events") == 25
        assert value(found, "consumer_events_persisted_total", table="http_requests") == 35
        assert value(found, "kafka_up") == 1
        delivered = wait_until(lambda: value(samples(app), "kafka_events_produced_total",
                                             event_type="custom", result="delivered") == 25, 10, 0.3)
        assert delivered
    finally:
        app.stop()
        broker.stop()


def test_a_label_set_is_one_child_however_often_and_however_it_is_named():
    from prometheus_client import Counter

    from appliance.core.metrics import CachedChildren
    counter = CachedChildren(Counter("cached_total", "test", ["method", "route"], registry=None))
    for _ in range(3):
        counter.labels("GET", "/").inc()
    counter.labels(method="GET", route="/").inc()
    counter.labels("POST", "/").inc(2)
    assert counter.labels("GET", "/") is counter.metric.labels("GET", "/")
    totals = {(s.labels["method"], s.labels["route"]): s.value
              for s in counter.metric.collect()[0].samples if s.name == "cached_total"}
    assert totals == {("GET", "/"): 4, ("POST", "/"): 2}
    assert counter.describe()[0].name == "cached"  # everything else is the metric's own

"""The Kafka endpoints' contract, in-process: every bad input has its defined answer."""

from __future__ import annotations

import json

import pytest
from conftest import call_wsgi

from appliance.api.http.app import create_app
from appliance.api.http.services import Services
from appliance.core.config import Settings
from appliance.schema.producer_status import ProducerStatus

TOKEN = "s3cret-token"


class RecordingSink:
    """Stands in for the producer: records what the API hands over."""

    kafka_up = True
    enabled = True

    def __init__(self, outcome: str = "queued") -> None:
        self.outcome = outcome
        self.events: list[dict] = []

    def emit(self, event, headers=None, durable=False) -> str:
        self.events.append(event)
        return self.outcome

    def emit_all(self, pairs, durable=False) -> str:
        for event, headers in pairs:
            self.emit(event, headers, durable)
        return self.outcome

    def status(self) -> ProducerStatus:
        return ProducerStatus(connected=self.kafka_up, state="UP" if self.kafka_up else "DOWN")

    def flush(self, timeout: float) -> int:
        return 0


def app_with(sink=None, **env):
    # Not about who may use what unless a test says (tests/test_planes.py is): open by default.
    settings = Settings.from_env({"KAFKA_BROKERS": "127.0.0.1:9", "ADMIN_ON_PUBLIC_PORT": "open",
                                  **env})
    return create_app(settings, Services(settings, sink=sink or RecordingSink()))


def publish(app, body, content_type="application/json", **headers):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return call_wsgi(app, "POST", "/kafka/publish", body=raw,
                     headers={"Content-Type": content_type, **headers})


def test_valid_publish_is_accepted_with_its_event_id():
    sink = RecordingSink()
    response = publish(app_with(sink), {"event_type": "deploy.done", "payload": {"v": 2}})
    assert response.status == 202
    assert response.json() == {"event_id": sink.events[0]["event_id"], "status": "queued"}
    assert sink.events[0]["event_type"] == "deploy.done" and sink.events[0]["payload"] == {"v": 2}


def test_publish_while_kafka_is_down_says_spooled():
    response = publish(app_with(RecordingSink("spooled")), {"event_type": "a", "payload": {}})
    assert response.status == 202 and response.json()["status"] == "spooled"


def test_publish_that_cannot_be_kept_is_refused_not_lost_silently():
    response = publish(app_with(RecordingSink("lost")), {"event_type": "a", "payload": {}})
    assert response.status == 503 and "not accepted" in response.json()["error"]


@pytest.mark.parametrize(("body", "field"), [
    (b"{not json", "malformed JSON"),
    (b"[1, 2]", "JSON object"),
    ({"payload": {}}, "event_type"),
    ({"event_type": "UPPER", "payload": {}}, "event_type"),
    ({"event_type": "x" * 65, "payload": {}}, "event_type"),
    ({"event_type": "http_request", "payload": {}}, "reserved"),
    ({"event_type": "ok", "payload": [1]}, "payload"),
    ({"event_type": "ok", "payload": {}, "extra": 1}, "extra"),
    (b"\xff\xfe", "malformed JSON"),
])
def test_bad_publish_bodies_are_400_naming_the_problem(body, field):
    response = publish(app_with(), body)
    assert response.status == 400
    assert field in response.json()["error"] and response.json()["status"] == 400


def test_wrong_content_type_is_415():
    response = publish(app_with(), {"event_type": "a"}, content_type="text/plain")
    assert response.status == 415 and response.json()["status"] == 415


def test_body_over_the_limit_is_413():
    big = {"event_type": "a", "payload": {"x": "y" * 70_000}}
    assert publish(app_with(), big).status == 413


def test_publish_without_kafka_configured_is_503():
    settings = Settings.from_env({"ADMIN_ON_PUBLIC_PORT": "open"})
    response = publish(create_app(settings), {"event_type": "a", "payload": {}})
    assert response.status == 503 and "KAFKA_BROKERS" in response.json()["error"]


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer{TOKEN}"])
def test_write_endpoints_need_the_bearer_token_when_set(header):
    app = app_with(API_TOKEN=TOKEN, ADMIN_ON_PUBLIC_PORT="token")
    headers = {"Authorization": header} if header else {}
    for path in ("/kafka/publish", "/kafka/flush"):
        response = call_wsgi(app, "POST", path, body=b'{"event_type": "a"}',
                             headers={"Content-Type": "application/json", **headers})
        assert response.status == 401, path
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="simple-time-service"')


def test_right_token_is_accepted_and_reads_need_it_too():
    app = app_with(API_TOKEN=TOKEN, ADMIN_ON_PUBLIC_PORT="token")
    ok = publish(app, {"event_type": "a", "payload": {}}, Authorization=f"Bearer {TOKEN}")
    assert ok.status == 202
    assert call_wsgi(app, "GET", "/kafka/status").status == 401
    assert call_wsgi(app, "GET", "/kafka/status",
                     headers={"Authorization": f"Bearer {TOKEN}"}).status == 200
    assert call_wsgi(app, "GET", "/").status == 200


def test_events_need_the_token_when_set():
    app = app_with(API_TOKEN=TOKEN, ADMIN_ON_PUBLIC_PORT="token")
    assert call_wsgi(app, "GET", "/events").status == 401
    assert call_wsgi(app, "GET", "/events", headers={"Authorization": f"Bearer {TOKEN}"}).status == 200


@pytest.mark.parametrize("timeout", ["abc", "-1", "31", "nan", "inf", ""])
def test_flush_timeout_must_be_0_to_30_seconds(timeout):
    response = call_wsgi(app_with(), "POST", "/kafka/flush", query=f"timeout={timeout}")
    assert response.status == 400 and "timeout" in response.json()["error"]


def test_flush_refuses_a_parameter_it_does_not_know():
    response = call_wsgi(app_with(), "POST", "/kafka/flush", query="timeout=1&wait=yes")
    assert response.status == 400
    assert response.json()["error"] == "unknown parameter(s): wait"


def test_flush_returns_what_remains():
    response = call_wsgi(app_with(), "POST", "/kafka/flush", query="timeout=1")
    assert response.status == 200 and response.json() == {"remaining": 0, "flushed": True}


def test_flush_and_status_are_503_when_the_broker_is_unreachable():
    sink = RecordingSink()
    sink.kafka_up = False
    app = app_with(sink)
    assert call_wsgi(app, "POST", "/kafka/flush").status == 503
    assert call_wsgi(app, "GET", "/kafka/status").status == 503


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "limit=ten", "before=yesterday",
                                   "after=2026-13-01", "type=NOPE", "type="])
def test_bad_event_queries_are_400(query, tmp_path):
    app = app_with(DATA_DIR=str(tmp_path))
    response = call_wsgi(app, "GET", "/events", query=query)
    assert response.status == 400, query
    assert response.json()["status"] == 400


@pytest.mark.parametrize("query", ["history=61", "history=x"])
def test_bad_status_history_is_400(query, tmp_path):
    response = call_wsgi(app_with(DATA_DIR=str(tmp_path)), "GET", "/status", query=query)
    assert response.status == 400


def test_text_no_event_can_carry_is_a_400_not_a_500():
    body = b'{"event_type": "a", "payload": {"x": "\\ud800"}}'  # a lone surrogate, valid JSON
    response = publish(app_with(), body)
    assert response.status == 400 and "Unicode" in response.json()["error"]


def test_event_time_beyond_the_calendar_is_a_400(tmp_path):
    response = call_wsgi(app_with(DATA_DIR=str(tmp_path)), "GET", "/events",
                         query="before=9999-12-31T23:59:59-05:00")
    assert response.status == 400 and "before" in response.json()["error"]


def test_events_by_persisted_order_show_late_deliveries_first(tmp_path):
    from appliance.pipeline.consumer import store
    from appliance.schema import audit_db
    settings_env = {"DATA_DIR": str(tmp_path)}
    db = store.Store(Settings.from_env({**settings_env}).db_path)
    db.open()
    common = {"request_id": "r", "trace_id": None, "hostname": "h", "method": "GET", "route": "/",
              "query": "", "user_ip": "203.0.113.1", "proxy_chain": "", "user_agent": "",
              "bytes": 0}
    store.insert_ignore(audit_db.HttpRequest, [
        {**common, "event_id": "on-time", "path": "/a", "occurred_at": "2026-01-01T10:00:05.000000Z",
         "persisted_at": "2026-01-01T10:00:05.010000Z"},
        {**common, "event_id": "late", "path": "/b", "occurred_at": "2026-01-01T09:00:00.000000Z",
         "persisted_at": "2026-01-01T10:00:06.000000Z"},  # replayed from the spool an hour later
    ])
    db.close()
    app = app_with(**settings_env)
    by_time = call_wsgi(app, "GET", "/events", query="limit=1").json()["events"]
    by_write = call_wsgi(app, "GET", "/events", query="limit=1&order=persisted").json()["events"]
    assert [e["event_id"] for e in by_time] == ["on-time"]
    assert [e["event_id"] for e in by_write] == ["late"]
    assert call_wsgi(app, "GET", "/events", query="order=random").status == 400

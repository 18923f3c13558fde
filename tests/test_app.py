"""The WSGI app in-process: a fresh app per test, requests built by hand (no server, no sockets)."""

from __future__ import annotations

import io
import json
import platform
import re
import socket
import time
from datetime import datetime, timezone
from typing import Any

import bottle
import pytest
from conftest import REPO_ROOT, UUID7_RE, call_wsgi

from appliance.api.http.app import Services, create_app
from appliance.api.http.errors import HttpError
from appliance.api.http.fastpath import IndexFastPath
from appliance.api.http.host import HostInfo
from appliance.api.http.jsonio import read_json_object
from appliance.core.config import Settings

INDEX_KEYS = {"message", "timestamp", "user_ip", "proxy_chain", "hostname", "os", "pod_ip",
              "kafka_status"}
TIMESTAMP_RE = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z"  # use re.fullmatch


class UpSink:
    """An event sink that reports Kafka as reachable and keeps what it is given."""

    kafka_up = True
    enabled = True

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: dict[str, Any], headers=None, durable=False) -> str:
        self.events.append(event)
        return "queued"

    def emit_all(self, pairs, durable=False) -> str:
        self.durable = durable
        for event, headers in pairs:
            self.emit(event, headers, durable)
        return "queued"


def make_app(env: dict[str, str] | None = None, **services: Any):
    # Not about who may use what (tests/test_planes.py is): the admin routes open.
    settings = Settings.from_env({"ADMIN_ON_PUBLIC_PORT": "open", **(env or {})})
    return create_app(settings, Services(settings, **services))


def boom() -> None:
    raise RuntimeError("secret internals: password=hunter2 at /srv/app/db.py")


@pytest.fixture
def app():
    return make_app()


@pytest.fixture
def app_with_failing_route():
    """A fresh app with one extra route that raises: added on the Bottle app inside the middleware."""
    app = make_app()
    bottle_app = app.app.bottle  # behind the middleware and the GET / fast path
    assert isinstance(bottle_app, bottle.Bottle)
    bottle_app.route("/boom", callback=boom)
    return app


# --- GET / -------------------------------------------------------------------------------


def test_index_has_exactly_the_eight_documented_keys(app):
    response = call_wsgi(app, "GET", "/")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert set(response.json()) == INDEX_KEYS


def test_index_timestamp_is_utc_with_microseconds_and_close_to_now(app):
    body = call_wsgi(app, "GET", "/").json()
    assert re.fullmatch(TIMESTAMP_RE, body["timestamp"])
    stamp = datetime.strptime(body["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    assert abs((datetime.now(timezone.utc) - stamp).total_seconds()) < 5


def test_index_reports_kafka_not_up_when_kafka_is_not_configured(app):
    body = call_wsgi(app, "GET", "/").json()
    assert body["kafka_status"] == "NOT UP"
    assert body["message"] == "Hello, Kafka is NOT UP"


def test_index_reports_kafka_up_when_the_sink_is_connected():
    body = call_wsgi(make_app(sink=UpSink()), "GET", "/").json()
    assert body["kafka_status"] == "UP"
    assert body["message"] == "Hello, Kafka is UP"


def test_index_reports_host_name_and_operating_system(app):
    body = call_wsgi(app, "GET", "/").json()
    assert body["hostname"] == socket.gethostname()
    assert body["os"] == platform.system()


def test_index_pod_ip_comes_from_pod_ip_first():
    app = make_app({"POD_IP": "10.1.2.3", "HOST_IP": "10.9.9.9"})
    assert call_wsgi(app, "GET", "/").json()["pod_ip"] == "10.1.2.3"


def test_index_pod_ip_falls_back_to_host_ip():
    app = make_app({"HOST_IP": "10.9.9.9"})
    assert call_wsgi(app, "GET", "/").json()["pod_ip"] == "10.9.9.9"


def test_index_pod_ip_may_be_null_when_nothing_is_known():
    app = make_app(host=HostInfo(hostname="h", os="Linux", pod_ip=None))
    body = call_wsgi(app, "GET", "/").json()
    assert body["pod_ip"] is None and body["hostname"] == "h"


def test_index_user_ip_is_the_peer_without_proxies(app):
    body = call_wsgi(app, "GET", "/", remote_addr="203.0.113.9").json()
    assert body["user_ip"] == "203.0.113.9"
    assert body["proxy_chain"] == ""


def test_index_user_ip_comes_from_forwarded_for_sent_by_a_trusted_proxy(app):
    body = call_wsgi(app, "GET", "/", headers={"X-Forwarded-For": "198.51.100.7"}).json()
    assert body["user_ip"] == "198.51.100.7"
    assert body["proxy_chain"] == "198.51.100.7"


def test_spoofed_forwarded_for_from_untrusted_peer_is_ignored(app):
    body = call_wsgi(app, "GET", "/", remote_addr="203.0.113.9",
                     headers={"X-Forwarded-For": "198.51.100.7"}).json()
    assert body["user_ip"] == "203.0.113.9"
    assert body["proxy_chain"] == "198.51.100.7"


# --- health, readiness, version -------------------------------------------------------------


def test_healthz_is_healthy(app):
    response = call_wsgi(app, "GET", "/healthz")
    assert (response.status, response.json()) == (200, {"status": "healthy"})


def test_readyz_follows_the_lifecycle_starting_serving_draining():
    settings = Settings.from_env({})
    services = Services(settings)
    app = create_app(settings, services)

    starting = call_wsgi(app, "GET", "/readyz")
    assert starting.status == 503
    assert starting.json() == {"error": "not ready: starting", "status": 503}

    services.lifecycle.serving()
    serving = call_wsgi(app, "GET", "/readyz")
    assert (serving.status, serving.json()) == (200, {"status": "ready"})

    services.lifecycle.draining()
    draining = call_wsgi(app, "GET", "/readyz")
    assert draining.status == 503
    assert draining.json() == {"error": "not ready: draining", "status": 503}


def test_version_reports_the_version_file(app):
    body = call_wsgi(app, "GET", "/version").json()
    assert body["version"] == (REPO_ROOT / "VERSION").read_text().strip()
    assert body["python"] == platform.python_version()
    assert body["commit"] is None or isinstance(body["commit"], str)


def test_version_commit_comes_from_git_commit_when_set():
    body = call_wsgi(make_app({"GIT_COMMIT": "0123abcd"}), "GET", "/version").json()
    assert body["commit"] == "0123abcd"


# --- errors are JSON ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/café", "/admin\u202eevil", "/\x9b31m", "/日本"])
def test_a_path_is_recorded_as_the_client_sent_it_whatever_its_characters(path):
    sink = UpSink()
    wsgi_path = path.encode("utf-8").decode("latin-1")  # PEP 3333: the bytes, as latin-1
    answer = call_wsgi(make_app(sink=sink), "GET", wsgi_path)
    assert answer.status == 404  # through Bottle, which decodes PATH_INFO when it routes
    assert [event["payload"]["path"] for event in sink.events] == [path, path]


def test_unknown_path_is_a_json_404(app):
    response = call_wsgi(app, "GET", "/no/such/page")
    assert response.status == 404
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "status"}
    assert body["status"] == 404
    assert body["error"].startswith("not found")


def test_wrong_method_is_a_json_405_with_allow_header(app):
    response = call_wsgi(app, "DELETE", "/healthz")
    assert response.status == 405
    assert "GET" in response.headers["Allow"]
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"error": "method not allowed", "status": 405}


def test_body_over_max_body_bytes_is_a_json_413():
    app = make_app({"MAX_BODY_BYTES": "10"})
    response = call_wsgi(app, "POST", "/", body=b"x" * 11)
    assert response.status == 413
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"error": "body larger than 10 bytes", "status": 413}


def test_body_of_exactly_max_body_bytes_is_not_refused_for_size():
    app = make_app({"MAX_BODY_BYTES": "10"})
    assert call_wsgi(app, "POST", "/", body=b"x" * 10).status == 405  # reaches routing


def test_unhandled_exception_is_a_json_500_without_internals(app_with_failing_route):
    response = call_wsgi(app_with_failing_route, "GET", "/boom")
    assert response.status == 500
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"error": "internal server error", "status": 500}
    for leak in (b"Traceback", b"RuntimeError", b"secret", b"hunter2", b"db.py", b"<html"):
        assert leak not in response.body


def test_unhandled_exception_is_logged_with_its_traceback(app_with_failing_route, caplog):
    response = call_wsgi(app_with_failing_route, "GET", "/boom")
    records = [r for r in caplog.records if r.levelname == "ERROR" and r.exc_info]
    assert records, "the failure must be logged for operators"
    assert records[0].exc_info[0] is RuntimeError
    assert records[0].request_id == response.headers["X-Request-ID"]


# --- X-Request-ID ---------------------------------------------------------------------------


@pytest.mark.parametrize("incoming", ["abc-123", "req_7.f:g@h/i+j=k", "A" * 128,
                                      "6f1c2a9e-0d4b-4c1e-9a57-3b2f8c1d0e42"])
def test_sane_incoming_request_id_is_echoed(app, incoming):
    response = call_wsgi(app, "GET", "/healthz", headers={"X-Request-ID": incoming})
    assert response.headers["X-Request-ID"] == incoming


@pytest.mark.parametrize("incoming", ["A" * 129, "has spaces", "<script>alert(1)</script>", "",
                                      "semi;colon", "quote\"d", "ünïcode"])
def test_insane_incoming_request_id_is_replaced_by_a_new_uuid(app, incoming):
    response = call_wsgi(app, "GET", "/healthz", headers={"X-Request-ID": incoming})
    assert re.fullmatch(UUID7_RE, response.headers["X-Request-ID"])


def test_request_id_with_a_trailing_newline_is_replaced(app):
    # A newline in an echoed header would split the response header block.
    response = call_wsgi(app, "GET", "/healthz", headers={"X-Request-ID": "abc\n"})
    assert re.fullmatch(UUID7_RE, response.headers["X-Request-ID"])


def test_each_request_without_an_id_gets_a_different_one(app):
    ids = {call_wsgi(app, "GET", "/healthz").headers["X-Request-ID"] for _ in range(20)}
    assert len(ids) == 20
    assert all(re.fullmatch(UUID7_RE, i) for i in ids)


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("GET", "/", b"", 200),
    ("GET", "/healthz", b"", 200),
    ("GET", "/readyz", b"", 503),
    ("GET", "/nope", b"", 404),
    ("PUT", "/", b"", 405),
    ("POST", "/", b"x" * 70_000, 413),
    ("GET", "/boom", b"", 500),
])
def test_every_response_including_errors_carries_a_request_id(app_with_failing_route, method,
                                                               path, body, status):
    response = call_wsgi(app_with_failing_route, method, path, body=body)
    assert response.status == status
    assert re.fullmatch(UUID7_RE, response.headers["X-Request-ID"])


# --- JSON request bodies (unit level: no JSON-body endpoint in the foundation) -------------


def json_request(body: bytes, content_type: str | None = "application/json") -> bottle.BaseRequest:
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/", "wsgi.input": io.BytesIO(body),
               "CONTENT_LENGTH": str(len(body))}
    if content_type is not None:
        environ["CONTENT_TYPE"] = content_type
    return bottle.BaseRequest(environ)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "application/jsonx"])
def test_body_that_is_not_declared_json_is_415(content_type):
    with pytest.raises(HttpError) as caught:
        read_json_object(json_request(b'{"a": 1}', content_type), 1024)
    assert caught.value.status_code == 415
    assert "application/json" in caught.value.message


def test_json_body_with_charset_parameter_is_accepted():
    request = json_request(b'{"a": 1}', "Application/JSON; charset=utf-8")
    assert read_json_object(request, 1024) == {"a": 1}


def test_json_body_over_the_limit_is_413():
    with pytest.raises(HttpError) as caught:
        read_json_object(json_request(json.dumps({"a": "x" * 100}).encode()), 50)
    assert caught.value.status_code == 413


@pytest.mark.parametrize(("body", "fragment"), [
    (b"{not json", "malformed JSON"),
    (b"\xff\xfe", "malformed JSON"),
    (b"[1, 2]", "JSON object"),
    (b'"text"', "JSON object"),
])
def test_json_body_that_is_not_one_object_is_400(body, fragment):
    with pytest.raises(HttpError) as caught:
        read_json_object(json_request(body), 1024)
    assert caught.value.status_code == 400
    assert fragment in caught.value.message


def test_ids_are_uuid7_so_ids_made_later_sort_later():
    from appliance.core.ids import new_id
    made = []
    for _ in range(3):
        made.append(new_id())
        time.sleep(0.002)  # the time part counts milliseconds
    assert all(re.fullmatch(UUID7_RE, i) for i in made)
    assert made == sorted(made) and len(set(made)) == 3
    assert abs(int(made[0][:8] + made[0][9:13], 16) / 1000 - time.time()) < 5  # Unix ms


# --- GET / without Bottle -------------------------------------------------------------------


def bottle_only(app):
    """The same middleware and routes with every request going through Bottle."""
    app.app = app.app.bottle  # without fastpath.IndexFastPath
    return app


def comparable(response) -> tuple:
    body = re.sub(rb'"timestamp":"[^"]*"', b'"timestamp":""', response.body)
    headers = [(k, v) for k, v in response.headers.items() if k != "X-Request-ID"]
    return response.status, response.reason, headers, body


@pytest.mark.parametrize("method,query,headers", [
    ("GET", "", {}), ("HEAD", "", {}), ("GET", "a=1&b", {}),
    ("GET", "", {"X-Forwarded-For": "198.51.100.7, 10.0.0.5", "User-Agent": "lb/1.0"}),
])
def test_get_index_answers_without_bottle_exactly_as_bottle_does(method, query, headers):
    fast_sink, bottle_sink = UpSink(), UpSink()
    fast = make_app(sink=fast_sink)
    slow = bottle_only(make_app(sink=bottle_sink))
    assert isinstance(fast.app, IndexFastPath) and isinstance(slow.app, bottle.Bottle)
    answers = [call_wsgi(app, method, "/", query=query, headers=headers) for app in (fast, slow)]
    assert comparable(answers[0]) == comparable(answers[1])
    assert answers[0].status == 200
    def strip(events):
        return [{k: v for k, v in e["payload"].items() if k != "duration_ms"} for e in events]
    assert strip(fast_sink.events) == strip(bottle_sink.events)  # same route label, same fields
    assert [e["payload"]["route"] for e in fast_sink.events] == ["/", "/"]


@pytest.mark.parametrize("method,path", [("POST", "/"), ("GET", "//"), ("GET", "/healthz"),
                                         ("OPTIONS", "/"), ("GET", "/nope")])
def test_other_methods_and_paths_still_go_through_bottle(method, path):
    fast, slow = make_app(), bottle_only(make_app())
    assert comparable(call_wsgi(fast, method, path)) == comparable(call_wsgi(slow, method, path))


def test_a_fast_path_that_fails_hands_the_request_to_bottle(monkeypatch):
    from appliance.api.http import fastpath
    from appliance.api.http.routes import core
    monkeypatch.setattr(fastpath, "index_document", lambda *a: boom())
    assert call_wsgi(make_app(), "GET", "/").json()["kafka_status"] == "NOT UP"  # Bottle's answer
    monkeypatch.setattr(core, "index_document", lambda *a: boom())
    response = call_wsgi(make_app(), "GET", "/")  # and Bottle renders its error as JSON
    assert response.status == 500 and response.json() == {"error": "internal server error",
                                                           "status": 500}

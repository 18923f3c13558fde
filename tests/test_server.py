"""The real process: ``python -m appliance api`` under Waitress, spoken to over real HTTP.

Only 127.0.0.1 and ::1 are ever contacted. Every process is started through the ``live_server``
or ``start_server`` fixtures, which stop it even when the test fails.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import time

import pytest
from conftest import REPO_ROOT, UUID7_RE
from procs import free_port, ipv6_loopback_available, run_cli

pytestmark = pytest.mark.e2e

INDEX_KEYS = {"message", "timestamp", "user_ip", "proxy_chain", "hostname", "os", "pod_ip",
              "kafka_status"}
DEFAULT_MAX_BODY = 65_536
WAITRESS_HARD_CAP = DEFAULT_MAX_BODY + 65_536  # what server.py gives max_request_body_size


def parse_raw(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-cased names) and body of one raw HTTP/1.x response."""
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split(" ")[1]), headers, body


def assert_json_error(status: int, content_type: str, body: bytes, expected_status: int) -> dict:
    assert status == expected_status
    assert content_type.startswith("application/json")
    assert b"<html" not in body.lower()
    document = json.loads(body)
    assert set(document) >= {"error", "status"}
    assert document["status"] == expected_status
    assert isinstance(document["error"], str) and document["error"]
    return document


# --- GET / over HTTP ------------------------------------------------------------------------


def test_index_over_http_has_the_documented_shape_and_types(live_server):
    reply = live_server.get("/")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    body = reply.json()
    assert set(body) == INDEX_KEYS
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z", body["timestamp"])
    assert body["user_ip"] == "127.0.0.1"
    assert body["proxy_chain"] == ""
    assert isinstance(body["hostname"], str) and body["hostname"]
    assert isinstance(body["os"], str) and body["os"]
    assert body["pod_ip"] is None or isinstance(body["pod_ip"], str)
    assert body["kafka_status"] == "NOT UP"
    assert body["message"] == "Hello, Kafka is NOT UP"
    assert re.fullmatch(UUID7_RE, reply.headers["X-Request-ID"])


def test_forwarded_for_from_loopback_is_trusted_by_default(live_server):
    body = live_server.get("/", headers={"X-Forwarded-For": "198.51.100.7"}).json()
    assert body["user_ip"] == "198.51.100.7"
    assert body["proxy_chain"] == "198.51.100.7"


def test_forwarded_for_chain_is_walked_from_the_right(live_server):
    body = live_server.get("/", headers={"X-Forwarded-For": "192.0.2.66, 198.51.100.7, 127.0.0.1"}).json()
    assert body["user_ip"] == "198.51.100.7"


def test_spoofed_forwarded_for_from_untrusted_peer_is_ignored(start_server):
    server = start_server(TRUSTED_PROXIES="10.0.0.0/8")  # the loopback peer is not a proxy now
    body = server.get("/", headers={"X-Forwarded-For": "198.51.100.7"}).json()
    assert body["user_ip"] == "127.0.0.1"
    assert body["proxy_chain"] == "198.51.100.7"


@pytest.mark.parametrize("header", ["garbage", "<script>alert(1)</script>", "999.999.1.1, [, ,,",
                                    "unknown, _hidden", "1.2.3.4.5.6:99999"])
def test_garbage_forwarded_for_is_answered_normally(live_server, header):
    reply = live_server.get("/", headers={"X-Forwarded-For": header})
    assert reply.status == 200
    assert reply.json()["user_ip"] == "127.0.0.1"


def test_ipv6_listener_serves_ipv6_clients(start_server):
    if not ipv6_loopback_available():
        pytest.skip("this machine has no IPv6 loopback")
    server = start_server(HOST="::1")
    body = server.get("/").json()
    assert body["user_ip"] == "::1"
    forwarded = server.get("/", headers={"X-Forwarded-For": "2001:db8::7"}).json()
    assert forwarded["user_ip"] == "2001:db8::7"  # ::1 is a trusted proxy by default
    assert forwarded["proxy_chain"] == "2001:db8::7"


# --- request ids ----------------------------------------------------------------------------


def test_sane_request_id_is_echoed_over_http(live_server):
    reply = live_server.get("/healthz", headers={"X-Request-ID": "trace-42.a"})
    assert reply.headers["X-Request-ID"] == "trace-42.a"


def test_insane_request_id_is_replaced_over_http(live_server):
    reply = live_server.get("/healthz", headers={"X-Request-ID": "<script>" + "x" * 200})
    assert re.fullmatch(UUID7_RE, reply.headers["X-Request-ID"])


# --- errors are JSON, whoever produces them -------------------------------------------------


def test_unknown_path_is_a_json_404(live_server):
    reply = live_server.get("/no/such/page")
    document = assert_json_error(reply.status, reply.headers["Content-Type"], reply.body, 404)
    assert document["error"].startswith("not found")
    assert reply.headers["X-Request-ID"]


def test_wrong_method_is_a_json_405_with_allow_header(live_server):
    reply = live_server.request("DELETE", "/")
    assert_json_error(reply.status, reply.headers["Content-Type"], reply.body, 405)
    assert "GET" in reply.headers["Allow"]


def test_body_over_max_body_bytes_is_a_json_413(live_server):
    reply = live_server.request("POST", "/", body=b"x" * (DEFAULT_MAX_BODY + 1),
                                headers={"Content-Type": "application/octet-stream"})
    document = assert_json_error(reply.status, reply.headers["Content-Type"], reply.body, 413)
    assert str(DEFAULT_MAX_BODY) in document["error"]
    assert reply.headers["X-Request-ID"]


def test_chunked_body_over_max_body_bytes_is_a_json_413(live_server):
    size = DEFAULT_MAX_BODY + 100
    request = (b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
               b"Connection: close\r\n\r\n" + f"{size:x}\r\n".encode() + b"x" * size + b"\r\n0\r\n\r\n")
    status, headers, body = parse_raw(live_server.raw(request))
    assert_json_error(status, headers["content-type"], body, 413)


def test_body_over_the_waitress_hard_cap_is_still_a_json_413(live_server):
    # Waitress refuses this itself, before the app runs: our error task must still speak JSON.
    request = (b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
               + f"Content-Length: {WAITRESS_HARD_CAP + 1}\r\n\r\n".encode())
    status, headers, body = parse_raw(live_server.raw(request))
    assert_json_error(status, headers["content-type"], body, 413)


@pytest.mark.parametrize("request_bytes", [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1 extra words\r\nHost: 127.0.0.1\r\n\r\n",
    b"\x00\x01\x02 \xff\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nNo colon in this header\r\n\r\n",
])
def test_malformed_request_gets_a_json_400_not_html(live_server, request_bytes):
    status, headers, body = parse_raw(live_server.raw(request_bytes))
    assert_json_error(status, headers["content-type"], body, 400)


def test_server_survives_malformed_requests(live_server):
    live_server.raw(b"GARBAGE\r\n\r\n")
    assert live_server.get("/healthz").status == 200


# --- logs -----------------------------------------------------------------------------------


def test_every_stdout_line_is_json_and_each_request_has_one_access_line(start_server):
    server = start_server()
    sent = [
        ("GET", "/", {}, "/", 200, "127.0.0.1"),
        ("GET", "/", {"X-Forwarded-For": "198.51.100.7"}, "/", 200, "198.51.100.7"),
        ("GET", "/healthz", {"X-Request-ID": "log-test-1"}, "/healthz", 200, "127.0.0.1"),
        ("GET", "/nope", {}, "unmatched", 404, "127.0.0.1"),
        ("DELETE", "/version", {}, None, 405, "127.0.0.1"),
    ]
    request_ids = []
    for method, path, headers, _, status, _ in sent:
        reply = server.request(method, path, headers=headers)
        assert reply.status == status
        request_ids.append(reply.headers["X-Request-ID"])
    assert server.stop() == 0

    lines = [line for line in server.stdout().splitlines() if line.strip()]
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            pytest.fail(f"log line is not JSON: {line!r}")
    records = [json.loads(line) for line in lines]
    access = [r for r in records if r.get("logger") == "appliance.access"]
    ids = [r["request_id"] for r in access]
    assert len(ids) == len(set(ids)), "a request was logged twice"
    others = [r for r in access if r["request_id"] not in request_ids]
    assert all((r["method"], r["path"]) == ("GET", "/healthz") for r in others), \
        "only the start-up /healthz polls may be logged besides our requests"

    for request_id, (method, path, _, route, status, user_ip) in zip(request_ids, sent):
        mine = [r for r in access if r["request_id"] == request_id]
        assert len(mine) == 1, f"{method} {path}: {mine}"
        line = mine[0]
        assert line["method"] == method
        assert line["status"] == status
        assert line["user_ip"] == user_ip
        assert isinstance(line["duration_ms"], (int, float)) and line["duration_ms"] >= 0
        assert isinstance(line["route"], str)
        if route is not None:
            assert line["route"] == route
    assert "Traceback" not in server.stderr()


# --- shutdown -------------------------------------------------------------------------------


def poll_until(condition, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


def test_sigterm_turns_readyz_503_during_shutdown_delay_then_exits_zero(start_server):
    delay = 2.0
    server = start_server(SHUTDOWN_DELAY=str(delay))
    assert server.get("/readyz").status == 200

    signalled = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert poll_until(lambda: server.get("/readyz").status == 503, timeout=1.0), \
        "/readyz must turn 503 as soon as the signal is handled"
    draining = server.get("/readyz")
    assert draining.json() == {"error": "not ready: draining", "status": 503}
    assert server.get("/healthz").status == 200  # still alive: only readiness changes
    assert server.get("/").status == 200  # and still serving during the delay

    returncode = server.proc.wait(timeout=delay + 5)
    elapsed = time.monotonic() - signalled
    assert returncode == 0
    assert elapsed >= delay - 0.1, "the listener must stay open for SHUTDOWN_DELAY"

    messages = [r["message"] for r in server.log_records() if r.get("logger") == "appliance.server"]
    steps = [m for m in messages if m.startswith("shutdown")]
    assert steps[0] == "shutdown: readyz now 503"
    assert steps[-1] == "shutdown: complete"
    assert any(m.startswith("shutdown: listener closed") for m in steps)


def test_sigterm_without_delay_exits_zero_promptly(start_server):
    server = start_server()
    signalled = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=5) == 0
    assert time.monotonic() - signalled < 3


def test_sigint_shuts_down_like_sigterm(start_server):
    server = start_server()
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(timeout=5) == 0
    assert "Traceback" not in server.stderr()


def test_second_signal_skips_the_shutdown_delay(start_server):
    server = start_server(SHUTDOWN_DELAY="60")
    server.proc.send_signal(signal.SIGTERM)
    assert poll_until(lambda: server.get("/readyz").status == 503, timeout=1.0)
    signalled = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=10) == 0
    assert time.monotonic() - signalled < 5


def test_in_flight_request_completes_during_shutdown():
    """The real ApiServer around an app with one slow route: SIGTERM arrives mid-request."""
    import threading
    import urllib.request

    from appliance.api.http.lifecycle import Lifecycle
    from appliance.api.serving.server import ApiServer, bind
    from appliance.core.config import Settings
    from appliance.core.process import Runtime

    lifecycle = Lifecycle()
    entered = threading.Event()

    def slow_app(environ, start_response):
        lifecycle.enter()
        try:
            entered.set()
            time.sleep(1.0)
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"finished"]
        finally:
            lifecycle.leave()

    settings = Settings(host="127.0.0.1", port=0, shutdown_timeout=5)
    runtime = Runtime(settings, "api")
    server = ApiServer(slow_app, settings, lifecycle, bind("127.0.0.1", 0), runtime)
    result: dict = {}
    serving = threading.Thread(target=lambda: result.update(code=server.serve()))
    serving.start()
    answer: dict = {}

    def client():
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=10) as resp:
            answer.update(status=resp.status, body=resp.read())

    caller = threading.Thread(target=client)
    caller.start()
    assert entered.wait(5)
    runtime.handle_signal(signal.SIGTERM, None)
    caller.join(10)
    serving.join(10)
    assert answer == {"status": 200, "body": b"finished"}
    assert result == {"code": 0}


# --- configuration errors and the command line ----------------------------------------------


@pytest.mark.parametrize(("name", "value"), [
    ("PORT", "abc"), ("PORT", "70000"), ("TRUSTED_PROXIES", "nonsense"), ("WEB_THREADS", "0"),
])
def test_bad_configuration_is_one_line_on_stderr_and_a_nonzero_exit(tmp_path, name, value):
    result = run_cli("api", env={"HOST": "127.0.0.1", "PORT": str(free_port()),
                                 "DATA_DIR": str(tmp_path), name: value})
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert name in lines[0] and value in lines[0]
    assert "Traceback" not in result.stderr


def test_port_already_in_use_is_one_line_on_stderr_and_a_nonzero_exit(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_cli("api", env={"HOST": "127.0.0.1", "PORT": str(port), "DATA_DIR": str(tmp_path)})
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert str(port) in lines[0]
    assert "Traceback" not in result.stderr


def test_help_lists_the_subcommands():
    result = run_cli("--help")
    assert result.returncode == 0
    assert re.search(r"^\s+api\s", result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"^\s+version\s", result.stdout, re.MULTILINE), result.stdout


def test_version_subcommand_prints_the_version_file():
    result = run_cli("version")
    assert result.returncode == 0
    assert result.stdout.strip() == (REPO_ROOT / "VERSION").read_text().strip()


def test_version_endpoint_reports_the_version_file(live_server):
    assert live_server.get("/version").json()["version"] == (REPO_ROOT / "VERSION").read_text().strip()

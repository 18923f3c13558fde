"""Hostile HTTP against the real server, over raw sockets: every input gets a defined 4xx JSON
answer (never a 5xx, an HTML page or a traceback), what a client controls has a bounded cost,
and slow clients cannot hold the connection slots."""

from __future__ import annotations

import json
import re
import socket
import threading
import time

import pytest
from procs import ApiProcess, launch_api, wait_until

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory) -> ApiProcess:
    """An API with a token and Kafka configured (a closed port: publish still answers)."""
    server = launch_api(tmp_path_factory.mktemp("hostile"), {
        "API_TOKEN": TOKEN, "KAFKA_BROKERS": "127.0.0.1:9", "REQUEST_HEADER_TIMEOUT": "1",
        "CONNECTION_LIMIT": "16"})
    yield server
    server.stop()


def exchange(server: ApiProcess, request: bytes) -> tuple[int, dict, bytes]:
    """Send raw bytes, read the one response: (status, JSON body, raw head)."""
    raw = server.raw(request, timeout=10)
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body), head


def http(method: str, path: str, headers: list[tuple[bytes, bytes]] = (), body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: x", b"Connection: close",
             *(name + b": " + value for name, value in headers)]
    if body:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def publish(server: ApiProcess, body: bytes, token: bytes = TOKEN.encode()) -> tuple[int, dict, bytes]:
    return exchange(server, http("POST", "/kafka/publish", [
        (b"Content-Type", b"application/json"), (b"Authorization", b"Bearer " + token)], body))


@pytest.mark.parametrize(("body", "fragment"), [
    (b'{"event_type": "a", "payload": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested deeper"),
    (b'{"event_type": "a", "payload": {"x": ' + b"{\"y\": " * 40 + b"1" + b"}" * 40 + b"}}", "nested deeper"),
    (b'{"event_type": "a", "payload": {"v": NaN}}', "NaN"),
    (b'{"event_type": "a", "payload": {"v": Infinity}}', "Infinity"),
    (b'{"event_type": "a", "payload": {"v": -Infinity}}', "Infinity"),
    (b'{"event_type": "a", "payload": {"v": 1e400}}', "out of range"),
    (b'{"event_type": "a", "payload": {"v": ' + b"9" * 5000 + b"}}", "malformed JSON"),
    (b'{"event_type": "deploy\\n", "payload": {}}', "event_type"),
    (b'{"event_type": "http_request\\n", "payload": {}}', "event_type"),
    (b'{"event_type": "a", "payload": {"s": "\\ud800"}}', "lone surrogate"),
    (b"\xff\xfe{}", "malformed JSON"),
])
def test_hostile_publish_bodies_are_400_with_the_reason(guarded, body, fragment):
    status, answer, _ = publish(guarded, body)
    assert status == 400 and answer["status"] == 400, answer
    assert fragment in answer["error"]


@pytest.mark.parametrize("path", ["/events", "/kafka/publish", "/kafka/flush"])
def test_a_non_utf8_authorization_header_is_401_before_anything_else(guarded, path):
    method = "GET" if path == "/events" else "POST"
    status, answer, head = exchange(guarded, http(method, path, [(b"Authorization", b"Bearer \xff\xfe\x80")]))
    assert status == 401 and answer == {"error": "unknown token", "status": 401}
    assert b'www-authenticate: bearer realm="simple-time-service", error="invalid_token"' in head.lower()


def test_the_right_token_still_works(guarded):
    bearer = [(b"Authorization", b"Bearer " + TOKEN.encode())]
    status, _, _ = exchange(guarded, http("GET", "/events", bearer))
    assert status == 200


@pytest.mark.parametrize("accept", [b"\xff\xfe", b"application/openmetrics-text; q=\xe9", b"*/*" * 2000])
def test_metrics_answers_whatever_the_accept_header(guarded, accept):
    bearer = (b"Authorization", b"Bearer " + TOKEN.encode())
    raw = guarded.raw(http("GET", "/metrics", [(b"Accept", accept), bearer]), timeout=10)
    assert raw.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("header", [b"User-Agent", b"X-Request-ID", b"X-Forwarded-For", b"Traceparent"])
def test_non_utf8_bytes_in_any_header_get_a_normal_answer(guarded, header):
    status, answer, _ = exchange(guarded, http("GET", "/", [(header, b"\xff\xfex\x80")]))
    assert status == 200 and answer["kafka_status"] == "NOT UP"


def test_a_control_character_in_a_header_is_a_json_400(guarded):
    status, answer, _ = exchange(guarded, http("GET", "/", [(b"User-Agent", b"a\x00b")]))
    assert status == 400 and answer["status"] == 400


def test_a_huge_forwarded_for_is_answered_at_once_and_only_its_nearest_hops_are_read(guarded):
    header = ", ".join(f"10.0.{i // 250}.{i % 250}" for i in range(20_000)).encode()  # ~250 KB
    started = time.monotonic()
    status, answer, _ = exchange(guarded, http("GET", "/", [(b"X-Forwarded-For", header)]))
    elapsed = time.monotonic() - started
    assert status == 200
    hops = answer["proxy_chain"].split(", ")
    assert len(hops) == 32 and hops[-1] == "10.0.79.249"
    assert elapsed < 2.0, f"{elapsed:.2f} s for one request"  # read whole, it took ~1.5 s of CPU


def slow_client(port: int, seconds: float, answers: list[bytes]) -> None:
    """Sends a request's headers one byte every 0.2 s: never finishing within the timeout."""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds + 5) as sock:
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
        try:
            for byte in request:
                sock.sendall(bytes([byte]))
                time.sleep(0.2)
        except OSError:  # closed by the server: what we expect
            pass
        try:
            answers.append(sock.recv(4096))
        except OSError:
            answers.append(b"")


def test_slow_clients_cannot_hold_every_connection_slot(guarded):
    answers: list[bytes] = []
    slow = [threading.Thread(target=slow_client, args=(guarded.port, 10, answers)) for _ in range(16)]
    for thread in slow:
        thread.start()
    time.sleep(0.5)  # every slot taken now (CONNECTION_LIMIT=16)
    started = time.monotonic()
    wait_until(lambda: _healthz(guarded), 8, 0.2, "/healthz answered despite the slow clients")
    assert time.monotonic() - started < 5  # REQUEST_HEADER_TIMEOUT=1: their slots free within ~1 s
    for thread in slow:
        thread.join(15)
    assert len(answers) == 16 and all(a.startswith(b"HTTP/1.1 408") for a in answers), answers[:2]
    metrics = guarded.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).body.decode()
    closed = re.search(r"^http_request_header_timeouts_total (\S+)$", metrics, re.M)
    assert closed and float(closed.group(1)) >= 16


def _healthz(server: ApiProcess) -> bool:
    try:
        return server.get("/healthz", timeout=1).status == 200
    except OSError:
        return False


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(guarded):
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=10) as sock:
        started = time.monotonic()
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 4

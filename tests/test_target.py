"""The test target against the real server: GET /headers, /status/<code>, /delay/<seconds>,
?response_header=; each bound is a JSON 400, and delays never take GET /'s threads."""

from __future__ import annotations

import base64
import json
import statistics
import threading
import time

import pytest

pytestmark = pytest.mark.e2e


def b64url(document: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()


JWT = f"{b64url({'alg': 'RS256', 'kid': 'k1'})}.{b64url({'sub': 'alice', 'aud': 'lb'})}.c2lnbmF0dXJl"


# --- GET /headers ----------------------------------------------------------------------------


def test_headers_shows_the_request_with_its_secrets_redacted(start_server):
    server = start_server(REDACT_HEADERS="X-Api-Key")
    reply = server.get("/headers", anonymous=True, headers={
        "Authorization": "Bearer not-a-jwt-secret", "Cookie": "session=s3cret",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==", "X-Api-Key": "k3y", "X-Custom": "shown"})
    assert reply.status == 200
    view = reply.json()
    headers = view["headers"]
    for name in ("Authorization", "Cookie", "Proxy-Authorization", "X-Api-Key"):
        assert headers[name] == "[redacted]"
    assert headers["X-Custom"] == "shown"
    assert "s3cret" not in reply.body.decode() and "k3y" not in reply.body.decode()
    assert view["jwt"] is None  # not a JWT: nothing decoded
    assert reply.headers["Cache-Control"] == "no-store"


def test_headers_puts_the_direct_peer_beside_the_forwarded_client(live_server):
    view = live_server.get("/headers", headers={
        "X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9",
        "X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example", "X-Forwarded-Port": "443",
        "Forwarded": 'for=198.51.100.1;proto=http, for="[2001:db8::1]:4711";host="edge.example"'}).json()
    assert view["peer"] == "127.0.0.1" and view["user_ip"] == "203.0.113.9"
    forwarding = view["forwarding"]
    assert forwarding["peer_trusted"] is True  # loopback is a trusted proxy by default
    assert forwarding["forwarded"] == [{"for": "198.51.100.1", "proto": "http"},
                                       {"for": "[2001:db8::1]:4711", "host": "edge.example"}]
    assert forwarding["x_real_ip"] == "203.0.113.9"
    # Forwarded's nearest element that says wins over X-Forwarded-*, as the newer standard.
    assert forwarding["effective"] == {"proto": "http", "host": "edge.example", "port": "443"}


def test_headers_from_an_untrusted_peer_are_shown_but_not_believed(start_server):
    server = start_server(TRUSTED_PROXIES="10.0.0.0/8")
    view = server.get("/headers", headers={"X-Forwarded-For": "203.0.113.9",
                                           "X-Forwarded-Proto": "https",
                                           "X-Forwarded-Host": "evil.example"}).json()
    assert view["user_ip"] == "127.0.0.1" and view["peer"] == "127.0.0.1"
    forwarding = view["forwarding"]
    assert forwarding["peer_trusted"] is False
    assert forwarding["x_forwarded_host"] == "evil.example"  # shown as sent
    assert forwarding["effective"] == {"proto": "http", "host": f"127.0.0.1:{server.port}",
                                       "port": str(server.port)}


def test_a_bearer_jwt_is_decoded_but_marked_unverified_and_its_signature_never_shown(live_server):
    reply = live_server.get("/headers", anonymous=True, headers={"Authorization": f"Bearer {JWT}"})
    view = reply.json()
    assert view["jwt"] == {"header": {"alg": "RS256", "kid": "k1"},
                           "claims": {"sub": "alice", "aud": "lb"}, "verified": False}
    assert view["headers"]["Authorization"] == "[redacted]"
    assert b"c2lnbmF0dXJl" not in reply.body


def test_hostile_headers_are_text_and_bounded(live_server):
    sent = {f"X-Many-{n}": "v" for n in range(120)}
    sent["X-Long"] = "a" * 5000
    reply = live_server.get("/headers", headers=sent)
    assert reply.status == 200
    view = reply.json()
    assert view["headers_truncated"] is True and len(view["headers"]) == 100
    raw = live_server.raw(b"GET /headers HTTP/1.1\r\nHost: x\r\nX-Bytes: \xff\xfe<b>\r\n"
                          b"Authorization: Bearer a.b.c\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    view = json.loads(body)
    assert view["headers"]["X-Bytes"] == "\ufffd\ufffd<b>" and view["jwt"] is None


# --- /status/<code> --------------------------------------------------------------------------


@pytest.mark.parametrize("code", [200, 201, 202, 299, 301, 302, 307, 308])
def test_status_answers_the_code_asked_with_a_body_that_says_so(live_server, code):
    reply = live_server.get(f"/status/{code}")
    assert reply.status == code
    assert reply.json()["status"] == code and reply.json()["message"].endswith("as asked")
    if code >= 300:
        assert reply.headers["Location"] == "/"


@pytest.mark.parametrize("code", [400, 404, 418, 429, 500, 502, 503, 599])
def test_an_error_status_has_the_error_shape(live_server, code):
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        reply = live_server.request(method, f"/status/{code}")
        assert reply.status == code
        assert reply.json() == {"error": reply.json()["error"], "status": code}
        assert f"status {code} as asked" in reply.json()["error"]


@pytest.mark.parametrize("code", [204, 304])
def test_204_and_304_have_no_body(live_server, code):
    raw = live_server.raw(f"GET /status/{code} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {code}".encode()) and body == b""
    assert b"Content-Length" not in head and b"Content-Type" not in head


@pytest.mark.parametrize("code", [100, 102, 199])
def test_a_1xx_is_sent_without_a_body_and_the_connection_closes(live_server, code):
    raw = live_server.raw(f"GET /status/{code} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {code}".encode()) and body == b""
    assert b"Connection: close" in head  # raw() returned: the server closed it


@pytest.mark.parametrize("code", ["600", "99", "099", "1000", "abc", "-200", "2e2", "%C3%A9"])
def test_a_code_outside_100_to_599_is_a_400(live_server, code):
    reply = live_server.get(f"/status/{code}")
    assert reply.status == 400
    assert reply.json() == {"error": "code must be an integer from 100 to 599", "status": 400}


# --- ?response_header= -----------------------------------------------------------------------


def test_allowed_response_headers_are_echoed(live_server):
    reply = live_server.get("/status/200?response_header=Cache-Control:max-age=60"
                            "&response_header=X-Echo-Canary:blue&response_header=ETag:%22v1%22")
    assert reply.status == 200
    assert reply.headers["Cache-Control"] == "max-age=60"
    assert reply.headers["X-Echo-Canary"] == "blue" and reply.headers["ETag"] == '"v1"'
    assert live_server.get("/headers?response_header=X-Echo-A:1").headers["X-Echo-A"] == "1"


@pytest.mark.parametrize("query", [
    "response_header=Location:https://evil.example", "response_header=Set-Cookie:a=b",
    "response_header=Content-Length:0", "response_header=NoColon",
    "response_header=X-Echo-A:%0d%0aX-Injected:1", "response_header=X-Echo-A:" + "v" * 300,
    "&".join(["response_header=X-Echo-A:1"] * 9), "other=1"])
def test_other_response_headers_are_a_400(live_server, query):
    reply = live_server.get(f"/status/200?{query}")
    assert reply.status == 400 and reply.json()["status"] == 400
    assert "X-Injected" not in reply.headers


# --- /delay/<seconds> ------------------------------------------------------------------------


def test_delay_answers_after_the_time_asked(live_server):
    started = time.monotonic()
    reply = live_server.get("/delay/0.3")
    assert reply.status == 200 and 0.3 <= time.monotonic() - started < 2
    assert reply.json()["delay"] == 0.3 and reply.json()["slept"] >= 0.3


@pytest.mark.parametrize("seconds", ["10.5", "11", "-1", "nan", "inf", "x", "1e400"])
def test_a_delay_outside_0_to_max_delay_is_a_400(live_server, seconds):
    reply = live_server.get(f"/delay/{seconds}")
    assert reply.status == 400
    assert reply.json() == {"error": "seconds must be a number from 0 to 10 (MAX_DELAY)", "status": 400}


def get_latencies(server, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        assert server.get("/", timeout=5).status == 200
        latencies.append(time.perf_counter() - started)
    return latencies


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def test_the_delay_cap_answers_503_while_get_root_keeps_its_p99(start_server):
    # 8 threads, 2 delays at a time: 12 delays asked at once would hold every thread uncapped.
    server = start_server(WEB_PROCESSES="1", WEB_THREADS="8", DELAY_CONCURRENCY="2", MAX_DELAY="4")
    before = get_latencies(server, 300)
    replies: list[int] = []

    def ask() -> None:
        replies.append(server.get("/delay/3", timeout=10).status)

    askers = [threading.Thread(target=ask) for _ in range(12)]
    for asker in askers:
        asker.start()
    time.sleep(0.3)
    during = get_latencies(server, 300)
    for asker in askers:
        asker.join()
    assert sorted(replies) == [200] * 2 + [503] * 10
    refused = server.get("/delay/0")  # the slots are free again
    assert refused.status == 200
    # The same run, the same server: GET / is as quick with the delays held as without.
    assert p99(during) <= 2 * p99(before) + 0.010, (p99(before), p99(during))


def test_a_refused_delay_says_when_to_retry(start_server):
    server = start_server(WEB_PROCESSES="1", DELAY_CONCURRENCY="0")
    reply = server.get("/delay/1")
    assert reply.status == 503 and reply.headers["Retry-After"] == "1"
    assert reply.json() == {"error": "too many delays in flight (DELAY_CONCURRENCY)", "status": 503}

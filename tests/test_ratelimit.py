"""Rate limits: the write route and the expensive reads answer 429 with Retry-After beyond their
rate, per token or client address, counted in a metric; GET / is never limited. The buckets are
per API process: the tests with a real server run one (WEB_PROCESSES=1)."""

from __future__ import annotations

import json
import re

import pytest

from appliance.api.http.ratelimit import MAX_KEYS, TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_lets_its_burst_through_then_one_per_interval():
    clock = Clock()
    buckets = TokenBuckets(2.0, clock)  # 2 a second, a burst of 4
    assert [buckets.take("a") for _ in range(4)] == [0, 0, 0, 0]
    assert buckets.take("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert buckets.take("a") == 0
    assert buckets.take("b") == 0, "another key has its own bucket"


def test_a_refused_request_uses_nothing_up():
    clock = Clock()
    buckets = TokenBuckets(1.0, clock)
    for _ in range(2):
        buckets.take("a")
    waits = [buckets.take("a") for _ in range(5)]
    assert all(wait == pytest.approx(1.0) for wait in waits)


def test_no_client_can_make_the_table_grow_without_bound():
    buckets = TokenBuckets(1.0, Clock())
    for key in range(MAX_KEYS + 500):
        buckets.take(key)
    assert len(buckets._buckets) == MAX_KEYS


PUBLISH = json.dumps({"event_type": "rate.check", "payload": {}}).encode()


def publish(server, forwarded_for: str) -> tuple[int, dict]:
    reply = server.request("POST", "/kafka/publish", body=PUBLISH, headers={
        "Content-Type": "application/json", "X-Forwarded-For": forwarded_for})
    return reply.status, reply.headers


@pytest.mark.e2e
def test_over_the_rate_a_client_gets_429_with_retry_after_and_get_root_never_does(start_server):
    server = start_server(RATE_LIMIT_WRITES="2", KAFKA_BROKERS="127.0.0.1:9", WEB_PROCESSES="1")
    answers = [publish(server, "203.0.113.1") for _ in range(8)]
    statuses = [status for status, _ in answers]
    assert statuses[:4] == [202] * 4 and 429 in statuses[4:], statuses  # a burst of 4, then 2/s
    refused = next(headers for status, headers in answers if status == 429)
    assert int(refused["Retry-After"]) >= 1
    # The harness's token is the key when there is one: the same token from elsewhere waits too.
    assert publish(server, "203.0.113.99")[0] == 429
    assert all(server.get("/").status == 200 for _ in range(300)), "GET / is never limited"
    metrics = server.get("/metrics").body.decode()
    counted = re.search(r'^http_rate_limited_total\{route="/kafka/publish"\} (\S+)$', metrics, re.M)
    assert counted and float(counted.group(1)) >= 2


@pytest.mark.e2e
def test_without_a_token_the_client_address_is_the_key(start_server):
    server = start_server(RATE_LIMIT_READS="1", ADMIN_ON_PUBLIC_PORT="open", WEB_PROCESSES="1")
    first = [server.get("/events/stats", anonymous=True, headers={"X-Forwarded-For": "198.51.100.1"})
             for _ in range(4)]
    assert [reply.status for reply in first][:2] == [200, 200] and first[-1].status == 429
    other = server.get("/events/stats", anonymous=True, headers={"X-Forwarded-For": "198.51.100.2"})
    assert other.status == 200, "another client has a bucket of its own"

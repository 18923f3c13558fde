"""The consumer's own listener (CONSUMER_HEALTH_PORT): what a pod without the API is probed and
scraped on. Unit tests with a clock of our own; then the consumer program against a real broker."""

from __future__ import annotations

import json
import time

import pytest
from procs import Appliance, HttpClient, free_port, wait_until

from appliance.pipeline.consumer.health import LIVE_WITHIN, HealthListener, Heartbeat, answer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def status_of(heartbeat: Heartbeat, path: str) -> int:
    return answer(heartbeat, path, None)[0]


def test_starting_is_alive_but_not_ready_however_long_it_waits_for_kafka():
    clock = Clock()
    heartbeat = Heartbeat(clock)
    clock.now += 10 * LIVE_WITHIN  # waiting for the database or the broker at start
    assert status_of(heartbeat, "/healthz") == 200 and status_of(heartbeat, "/readyz") == 503


def test_a_loop_that_stops_turning_is_not_alive():
    clock = Clock()
    heartbeat = Heartbeat(clock)
    heartbeat.started()
    assert status_of(heartbeat, "/healthz") == 200 and status_of(heartbeat, "/readyz") == 200
    clock.now += LIVE_WITHIN - 1
    heartbeat.beat()
    clock.now += LIVE_WITHIN - 1
    assert status_of(heartbeat, "/healthz") == 200
    clock.now += 2
    status, content_type, body = answer(heartbeat, "/healthz", None)
    assert status == 503 and content_type == "application/json"
    assert json.loads(body) == {"error": "the consume loop has not turned for 61 s", "status": 503}


def test_anything_else_is_a_json_404_and_other_methods_a_405():
    heartbeat = Heartbeat()
    listener = HealthListener("127.0.0.1", free_port(), heartbeat).start()
    try:
        client = HttpClient("127.0.0.1", listener.server.server_address[1])
        reply = client.get("/events", anonymous=True)
        assert reply.status == 404 and json.loads(reply.body)["status"] == 404
        assert client.request("POST", "/healthz", body=b"x", anonymous=True).status == 405
        head = client.request("HEAD", "/healthz", anonymous=True)
        assert head.status == 200 and head.body == b""
    finally:
        listener.close()


def test_a_slow_client_does_not_hold_the_probes_up():
    import socket
    listener = HealthListener("127.0.0.1", free_port(), Heartbeat()).start()
    port = listener.server.server_address[1]
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]  # never send
    try:
        started = time.monotonic()
        assert HttpClient("127.0.0.1", port).get("/healthz", anonymous=True).status == 200
        assert time.monotonic() - started < 1.0
    finally:
        for connection in idle:
            connection.close()
        listener.close()


def answers(client: HttpClient, path: str) -> int | None:
    try:
        return client.get(path, anonymous=True).status
    except OSError:
        return None  # not listening yet


@pytest.mark.broker
def test_the_consumer_program_is_probed_and_scraped_on_its_own_port(tmp_path, broker):
    port = free_port()
    app = Appliance(tmp_path, broker.bootstrap, CONSUMER_HEALTH_PORT=str(port))
    app.start()
    try:
        health = HttpClient("127.0.0.1", port)
        wait_until(lambda: answers(health, "/readyz") == 200, 60, 0.2, "the consumer ready")
        assert health.get("/healthz", anonymous=True).status == 200
        for _ in range(5):
            assert app.get("/")[0] == 200
        wait_until(lambda: 'consumer_events_persisted_total{table="http_requests"} 5.0'
                   in health.get("/metrics", anonymous=True).body.decode(), 30, 0.2,
                   "the persisted rows counted on the consumer's /metrics")
        app.consumer.stop()
        with pytest.raises(OSError):
            health.get("/healthz", anonymous=True, timeout=2)  # gone with the program
    finally:
        app.stop()


def test_a_port_in_use_is_a_one_line_startup_error(tmp_path):
    import socket
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    app = Appliance(tmp_path, None, CONSUMER_HEALTH_PORT=str(taken.getsockname()[1]))
    try:
        app.consumer.start()
        wait_until(lambda: not app.consumer.running, 20, 0.1, "the consumer to exit")
        assert app.consumer.returncode == 2
        assert "CONSUMER_HEALTH_PORT: cannot listen on 127.0.0.1:" in app.consumer.output()
        assert "Traceback" not in app.consumer.output()
    finally:
        taken.close()
        app.stop()

"""Connections cannot starve the service: an idle keep-alive connection is closed after
KEEPALIVE_TIMEOUT, a request body sent too slowly gets a 408, and at the connection limit the
connection idle the longest makes room for one that wants to send a request. Against the real
API process."""

from __future__ import annotations

import http.client
import resource
import socket
import statistics
import time

import pytest
from procs import wait_until

pytestmark = pytest.mark.e2e


def get_root(port: int, timeout: float = 10.0) -> float:
    """Seconds a fresh connection's GET / took to be answered."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        assert response.status == 200
    finally:
        conn.close()
    return time.monotonic() - started


def idle_keepalive(port: int) -> socket.socket:
    """A connection that sent one GET /, read its answer, and stays open, silent."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        assert chunk, "closed before answering"
        answer += chunk
    return sock


def closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except (socket.timeout, TimeoutError):
        return False
    except ConnectionResetError:
        return True


def test_an_idle_keepalive_connection_is_closed_after_the_keepalive_timeout(start_server):
    server = start_server(KEEPALIVE_TIMEOUT="0.5", WEB_PROCESSES="1")
    with idle_keepalive(server.port) as sock:
        started = time.monotonic()
        assert closed_by_server(sock, 5), "kept open"
        assert 0.4 <= time.monotonic() - started < 3


def test_a_body_sent_too_slowly_gets_a_408_and_the_connection_is_closed(start_server):
    server = start_server(REQUEST_BODY_TIMEOUT="0.5", WEB_PROCESSES="1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /kafka/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nContent-Length: 100\r\n\r\n{\"event_type\":")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer
    assert b"X-Request-ID: " in head and b"Cache-Control: no-store" in head
    assert b"request body not received within 0.5 s" in body


def test_at_the_connection_limit_an_idle_connection_makes_room_for_a_new_client(start_server):
    server = start_server(CONNECTION_LIMIT="20", KEEPALIVE_TIMEOUT="600", WEB_PROCESSES="1")
    held = [idle_keepalive(server.port) for _ in range(30)]  # more than the limit
    try:
        assert get_root(server.port) < 2.0, "the new client waited for a free slot"
        closed = sum(closed_by_server(sock, 0.01) for sock in held)
        assert closed >= 10, "the oldest idle connections should have made room"
    finally:
        for sock in held:
            sock.close()


def raise_open_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.fail(f"this test needs {needed} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def fresh_latencies(port: int, count: int) -> list[float]:
    return [get_root(port) for _ in range(count)]


def test_two_thousand_idle_keepalive_connections_do_not_starve_get_root(start_server):
    """One client holds 2,000 connections that each sent a GET / and stay silent; fresh clients'
    GET / keeps its usual latency (the p99 of the same server just before, in the same run)."""
    raise_open_file_limit(4096)
    server = start_server()  # the defaults: WEB_PROCESSES=auto, CONNECTION_LIMIT=200 each
    usual = fresh_latencies(server.port, 100)
    held = []
    try:
        for _ in range(2000):
            try:
                held.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
                held[-1].sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            except OSError:
                break  # the listen backlog is full: the idle ones fill every slot already
        wait_until(lambda: server.get("/healthz").status == 200, 10)
        during = fresh_latencies(server.port, 100)
    finally:
        for sock in held:
            sock.close()
    usual_p99 = statistics.quantiles(usual, n=100)[98]
    during_p99 = statistics.quantiles(during, n=100)[98]
    print(f"held {len(held)}; fresh GET / p99 {usual_p99 * 1000:.1f} ms before, "
          f"{during_p99 * 1000:.1f} ms with them open")
    assert len(held) >= 1000
    assert during_p99 <= max(3 * usual_p99, usual_p99 + 0.05), (usual_p99, during_p99)

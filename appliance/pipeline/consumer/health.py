"""The consumer's own HTTP listener (CONSUMER_HEALTH_PORT), for a pod that runs no API.

In the scale-out layout the consumers are a workload of their own: without it, nothing would
answer a probe or a scrape there. It answers three paths and nothing else:

- ``/healthz``: 200 while the consume loop has turned within ``LIVE_WITHIN`` seconds, and while
  it starts (it waits for the database and the broker then, as long as they take). A loop
  wedged in a call that never returns is what a restart can fix; Kafka or the database being
  down is not (the loop keeps turning and retrying then), so neither fails it.
- ``/readyz``: 200 from the moment the consumer has its Kafka client until it stops.
- ``/metrics``: every process's series of this DATA_DIR, as the API's /metrics.

A thread per connection with a socket timeout, so one slow client cannot hold the probes up.
"""

from __future__ import annotations

import json
import logging
import socketserver
import threading
import time
from typing import Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from appliance.core import metrics

log = logging.getLogger("appliance.consumer")
LIVE_WITHIN = 60.0  # seconds: a step takes at most BATCH_WAIT plus one database retry back-off
CLIENT_TIMEOUT = 5.0  # seconds a client may take to send its request


class Heartbeat:
    """What the consume loop tells the listener: it turned, it is ready, it is stopping."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.beat_at = clock()
        self.ready = False

    def beat(self) -> None:
        self.beat_at = self.clock()

    def started(self) -> None:
        self.ready = True
        self.beat()

    def silent_for(self) -> float:
        """Seconds since the loop last turned; 0 until it started."""
        return self.clock() - self.beat_at if self.ready else 0.0


def answer(heartbeat: Heartbeat, path: str, accept: str | None) -> tuple[int, str, bytes]:
    """(status, content type, body) of one request."""
    if path == "/healthz":
        silent = heartbeat.silent_for()
        if silent > LIVE_WITHIN:
            return _json(503, {"error": f"the consume loop has not turned for {silent:.0f} s",
                               "status": 503})
        return _json(200, {"status": "healthy"})
    if path == "/readyz":
        if heartbeat.ready:
            return _json(200, {"status": "ready"})
        return _json(503, {"error": "not ready: starting or stopping", "status": 503})
    if path == "/metrics":
        body, content_type = metrics.exposition(accept)
        return 200, content_type, body
    return _json(404, {"error": f"not found: '{path[:200]}'", "status": 404})


def _json(status: int, document: dict) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(document).encode()


REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def wsgi_app(heartbeat: Heartbeat):
    def app(environ: dict, start_response) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            status, content_type, body = _json(405, {"error": "method not allowed", "status": 405})
        else:
            try:
                status, content_type, body = answer(heartbeat, environ.get("PATH_INFO", ""),
                                                    environ.get("HTTP_ACCEPT"))
            except Exception:
                log.exception("consumer health listener")
                status, content_type, body = _json(503, {"error": "internal error", "status": 503})
        start_response(f"{status} {REASONS.get(status, '')}", [
            ("Content-Type", content_type), ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store")])
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]
    return app


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # socketserver's backlog is 5: a burst of connections past it has its SYNs dropped, and a
    # probe behind them waited for the kernel's 1 s retransmission (measured: 1.02 s in CI).
    request_queue_size = 128


class _Handler(WSGIRequestHandler):
    timeout = CLIENT_TIMEOUT

    def log_message(self, *args) -> None:  # probes every few seconds: not worth a log line
        pass


class HealthListener:
    """The listener on ``host:port`` in a daemon thread; ``close`` stops it."""

    def __init__(self, host: str, port: int, heartbeat: Heartbeat) -> None:
        self.server = make_server(host, port, wsgi_app(heartbeat), _Server, _Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.5},
                                       name="consumer-health", daemon=True)

    def start(self) -> "HealthListener":
        self.thread.start()
        log.info("consumer health listener", extra={"address": self.server.server_address[:2]})
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

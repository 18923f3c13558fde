"""Serve the API with Waitress and shut down in a fixed, logged order on SIGTERM.

Order: /readyz turns 503 -> (SHUTDOWN_DELAY for load balancers to notice) -> stop accepting ->
in-flight requests finish (SHUTDOWN_TIMEOUT) -> worker threads stop -> event sink closes
(flush to Kafka, spool the rest) -> exit 0. A second signal skips the waits.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from typing import Callable

from waitress import create_server, wasyncore
from waitress.task import ErrorTask

from appliance.api.balance import ConnectionBalance, SharedAccept
from appliance.api.guards import (
    AcceptGuard,
    GuardedChannel,
    close_slow_clients,
    ensure_fd_limit,
)
from appliance.api.jsonio import error_body
from appliance.api.lifecycle import Lifecycle
from appliance.api.middleware import UNMATCHED_ROUTE, access_log
from appliance.core.config import Settings
from appliance.core.ids import new_id
from appliance.core.logs import ThrottledLogger

log = logging.getLogger("appliance.server")
LOOP_TICK = 0.1  # seconds per asyncore loop turn: how fast the loop notices a signal
QUEUE_WARNING_INTERVAL = 30.0  # seconds between two "Task queue depth" lines
# The guards scan every connection: under load the loop turns thousands of times a second, and
# scanning on each turn was ~8 % of the API's GIL time (bench/profile_api.py). A tenth of the
# header timeout (at most LOOP_TICK) apart is precise enough for a timeout.
GUARD_INTERVAL = LOOP_TICK


class JsonErrorTask(ErrorTask):
    """Waitress's own errors (malformed request line, body over its hard cap) as our JSON,
    with a request id and an access line like every other response."""

    def execute(self) -> None:
        error = self.request.error
        body = error_body(error.code, error.reason.lower())
        request_id = new_id()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.extend([("Content-Type", "application/json"),
                                      ("Cache-Control", "no-store"), ("X-Request-ID", request_id)])
        access_log.info("request", extra={
            "method": getattr(self.request, "command", None) or "", "route": UNMATCHED_ROUTE,
            "path": getattr(self.request, "path", None) or "", "status": error.code, "duration_ms": 0.0,
            "user_ip": self.channel.addr[0] if self.channel.addr else "", "request_id": request_id})
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(GuardedChannel):
    error_task_class = JsonErrorTask


def bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves: port 0 works and the real port is known at once."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(address)
    return sock


class ApiServer:
    def __init__(self, app: Callable, settings: Settings, lifecycle: Lifecycle,
                 sock: socket.socket, on_stopped: Callable[[], None] = lambda: None,
                 balance: ConnectionBalance | None = None) -> None:
        self.settings = settings
        self.lifecycle = lifecycle
        self.on_stopped = on_stopped
        self.signals = 0
        ensure_fd_limit(settings.connection_limit)
        self.server = create_server(
            app, sockets=[sock], threads=settings.web_threads,
            connection_limit=settings.connection_limit,
            # Hard cap above ours: bodies between the two get our JSON 413 from the middleware.
            max_request_body_size=settings.max_body_bytes + 65_536,
            clear_untrusted_proxy_headers=False,  # we walk X-Forwarded-For ourselves
            ident="simple-time-service",
        )
        self.server.channel_class = JsonErrorChannel
        # "Task queue depth is N", once per request that waits for a thread, made inside the
        # dispatcher's lock: under load a LogRecord per request (~6 % of the GIL time of the
        # API, bench/profile_api.py) while the workers waited for that lock.
        self.server.task_dispatcher.queue_logger = ThrottledLogger(
            logging.getLogger("waitress.queue"), QUEUE_WARNING_INTERVAL)
        self.accept_guard = AcceptGuard(self.server)
        self._not_connections = len(self.server._map)  # the listener and the loop's trigger
        self.port = sock.getsockname()[1]
        self._guard_interval = min(GUARD_INTERVAL, settings.request_header_timeout / 10)
        self.sharing = None if balance is None else SharedAccept(
            self.server, balance, self._connections, self._guard_interval)
        self._guards_due = 0.0

    def handle_signal(self, *_args) -> None:
        # Only set state here; the loop does the work (uvicorn's should_exit/force_exit).
        self.signals += 1
        self.lifecycle.draining()

    def signalled(self, signals: int) -> None:
        """The program has received ``signals`` stop signals so far (core.process.Runtime)."""
        self.signals = max(self.signals, signals)
        self.lifecycle.draining()

    def serve(self, install_signals: bool = True) -> int:
        if install_signals:  # only possible on the main thread; the program's runtime and the
            for signum in (signal.SIGTERM, signal.SIGINT):  # tests call handle_signal instead
                signal.signal(signum, self.handle_signal)
        self.lifecycle.serving()
        self._share_connections(time.monotonic())  # siblings count it from now, not a turn later
        log.info("serving", extra={"host": self.settings.host, "port": self.port,
                                   "threads": self.settings.web_threads})
        while not self.signals:
            self._tick()
        self._shutdown()
        return 0

    def _tick(self) -> None:
        wasyncore.loop(timeout=LOOP_TICK, map=self.server._map, use_poll=True, count=1)
        now = time.monotonic()
        if now >= self._guards_due:
            self._guards_due = now + self._guard_interval
            close_slow_clients(self.server._map.values(), self.settings.request_header_timeout)
            self.accept_guard.tick()
        if self.lifecycle.ready:
            self._share_connections(now)

    def _share_connections(self, now: float) -> None:
        if self.sharing is not None and self.accept_guard.resume_at is None:
            self.sharing.tick(now)

    def _connections(self) -> int:
        return len(self.server._map) - self._not_connections

    def _run_until(self, done: Callable[[], bool], seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not done():
            if time.monotonic() >= deadline or self.signals > 1:
                return False
            self._tick()
        return True

    def _shutdown(self) -> None:
        settings = self.settings
        log.info("shutdown: readyz now 503", extra={"delay_s": settings.shutdown_delay})
        self._run_until(lambda: False, settings.shutdown_delay)
        self.server.close()  # stop accepting; open connections still get their answers
        log.info("shutdown: listener closed, draining", extra={"in_flight": self.lifecycle.in_flight})
        drained = self._run_until(lambda: self.lifecycle.in_flight == 0 and not self._writing(),
                                  settings.shutdown_timeout)
        log.info("shutdown: drained" if drained else "shutdown: drain timed out",
                 extra={"in_flight": self.lifecycle.in_flight})
        self.server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
        wasyncore.close_all(self.server._map)
        self.on_stopped()
        log.info("shutdown: complete")

    def _writing(self) -> bool:
        return any(getattr(ch, "total_outbufs_len", 0) for ch in list(self.server._map.values()))

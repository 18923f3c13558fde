"""Serve the API with Waitress and shut down in a fixed, logged order on SIGTERM.

Order: /readyz turns 503 -> (SHUTDOWN_DELAY for load balancers to notice) -> stop accepting ->
in-flight requests finish (SHUTDOWN_TIMEOUT) -> worker threads stop -> event sink closes
(flush to Kafka, spool the rest) -> exit 0. A second signal skips the waits.
"""

from __future__ import annotations

import functools
import logging
import socket
import time
from typing import Any, Callable

from waitress import wasyncore

from appliance.api.http.access import ADMIN, PUBLIC
from appliance.api.http.lifecycle import Lifecycle
from appliance.api.serving.balance import ConnectionBalance, SharedAccept
from appliance.api.serving.connections import (
    close_idle,
    close_slow_clients,
    make_room,
    someone_waits,
)
from appliance.api.serving.guards import AcceptGuard, ensure_fd_limit
from appliance.api.serving.waitress_adapter import Server, dispatcher, pending_output
from appliance.core.config import Settings
from appliance.core.logs import ThrottledLogger
from appliance.core.process import Runtime

log = logging.getLogger("appliance.server")
LOOP_TICK = 0.1  # seconds per asyncore loop turn: how fast the loop notices a signal
QUEUE_WARNING_INTERVAL = 30.0  # seconds between two "Task queue depth" lines
# The guards scan every connection: under load the loop turns thousands of times a second, and
# scanning on each turn was ~8 % of the API's GIL time (bench/profile_api.py). A tenth of the
# header timeout (at most LOOP_TICK) apart is precise enough for a timeout.
GUARD_INTERVAL = LOOP_TICK


def on_plane(app: Callable, plane: str) -> Callable:
    """``app`` as a listener of ``plane`` serves it: the access rules read environ["sts.plane"]."""
    def planed(environ: dict, start_response: Callable) -> Any:
        environ["sts.plane"] = plane
        return app(environ, start_response)
    return planed


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
    """The server loop of one API process: serve until the runtime has a stop signal, then
    shut down in order. ``runtime`` is the program's one signal seam (core/process.py)."""

    def __init__(self, app: Callable, settings: Settings, lifecycle: Lifecycle,
                 sock: socket.socket, runtime: Runtime,
                 on_stopped: Callable[[], None] = lambda: None,
                 balance: ConnectionBalance | None = None,
                 admin_sock: socket.socket | None = None) -> None:
        self.settings, self.lifecycle, self.runtime = settings, lifecycle, runtime
        self.on_stopped = on_stopped
        ensure_fd_limit(settings.connection_limit)
        self.connections: dict = {}  # Waitress's socket map: listeners, triggers, channels
        # "Task queue depth is N", once per request that waits for a thread, made inside the
        # dispatcher's lock: under load a LogRecord per request (~6 % of the GIL time of the
        # API, bench/profile_api.py) while the workers waited for that lock.
        self.threads = dispatcher(settings.web_threads, ThrottledLogger(
            logging.getLogger("waitress.queue"), QUEUE_WARNING_INTERVAL))
        self.server = self._listen(on_plane(app, PUBLIC), sock, self._accept)
        self.accept_guard = AcceptGuard(self.server)
        self.admin = None if admin_sock is None else self._listen(
            on_plane(app, ADMIN), admin_sock, self._accept_admin)
        self.admin_guard = None if self.admin is None else AcceptGuard(self.admin)
        self._not_connections = len(self.connections)  # the listeners and their triggers
        self.listener = sock
        self.port = sock.getsockname()[1]
        self.admin_port = None if admin_sock is None else admin_sock.getsockname()[1]
        self._guard_interval = min(GUARD_INTERVAL, settings.request_header_timeout / 10,
                                   settings.request_body_timeout / 10,
                                   settings.keepalive_timeout / 10)
        self.sharing = None if balance is None else SharedAccept(
            balance, self._connections, self._guard_interval)
        self._guards_due = 0.0

    def _listen(self, app: Callable, sock: socket.socket,
                accept_policy: Callable[[Callable[[], Any]], Any]) -> Server:
        settings = self.settings
        return Server(
            app, sock, self.connections, self.threads, accept_policy,
            threads=settings.web_threads, connection_limit=settings.connection_limit,
            # Hard cap above ours: bodies between the two get our JSON 413 from the middleware.
            max_request_body_size=settings.max_body_bytes + 65_536,
            clear_untrusted_proxy_headers=False,  # we walk X-Forwarded-For ourselves
            ident="simple-time-service")

    def _accept(self, accept: Callable[[], Any]) -> Any:
        """The accept policy, in this order: the balance may leave the connection to a
        sibling; the guard pauses accepting when descriptors run out."""
        guarded = functools.partial(self.accept_guard.accept, accept)
        return self.sharing.accept(guarded) if self.sharing is not None else guarded()

    def _accept_admin(self, accept: Callable[[], Any]) -> Any:
        """The admin listener is not balanced: its few connections go to whoever wakes."""
        return self.admin_guard.accept(accept)

    def _make_room(self) -> None:
        """At the connection limit, room for a connection that waits, if there is one. Between
        the loop's turns: a channel closed while the loop polls could have its descriptor
        reused by the next accept in the same turn."""
        if len(self.connections) >= self.server.connection_limit and someone_waits(self.listener):
            make_room(self.connections.values())

    def serve(self) -> int:
        self.lifecycle.serving()
        self._share_connections(time.monotonic())  # siblings count it from now, not a turn later
        log.info("serving", extra={"host": self.settings.host, "port": self.port,
                                   "admin_host": self.settings.admin_host,
                                   "admin_port": self.admin_port,
                                   "threads": self.settings.web_threads})
        while not self.runtime.signals:
            self._tick()
        self._shutdown()
        return 0

    def _tick(self) -> None:
        wasyncore.loop(timeout=LOOP_TICK, map=self.connections, use_poll=True, count=1)
        self._make_room()
        now = time.monotonic()
        if now >= self._guards_due:
            self._guards_due = now + self._guard_interval
            settings = self.settings
            close_slow_clients(self.connections.values(), settings.request_header_timeout,
                               settings.request_body_timeout)
            close_idle(self.connections.values(), settings.keepalive_timeout)
            self.accept_guard.tick()
            if self.admin_guard is not None:
                self.admin_guard.tick()
        if self.lifecycle.ready:
            self._share_connections(now)

    def _share_connections(self, now: float) -> None:
        if self.sharing is not None and self.accept_guard.resume_at is None:
            self.sharing.tick(now)

    def _connections(self) -> int:
        return len(self.connections) - self._not_connections

    def _run_until(self, done: Callable[[], bool], seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not done():
            if time.monotonic() >= deadline or self.runtime.signals > 1:
                return False
            self._tick()
        return True

    def _shutdown(self) -> None:
        settings = self.settings
        self.lifecycle.draining()
        log.info("shutdown: readyz now 503", extra={"delay_s": settings.shutdown_delay})
        self._run_until(lambda: False, settings.shutdown_delay)
        self.server.close()  # stop accepting; open connections still get their answers
        if self.admin is not None:
            self.admin.close()
        log.info("shutdown: listener closed, draining", extra={"in_flight": self.lifecycle.in_flight})
        drained = self._run_until(lambda: self.lifecycle.in_flight == 0 and not self._writing(),
                                  settings.shutdown_timeout)
        log.info("shutdown: drained" if drained else "shutdown: drain timed out",
                 extra={"in_flight": self.lifecycle.in_flight})
        self.threads.shutdown(cancel_pending=True, timeout=1)
        wasyncore.close_all(self.connections)
        self.on_stopped()
        log.info("shutdown: complete")

    def _writing(self) -> bool:
        return any(pending_output(channel) for channel in list(self.connections.values()))

"""What no client may do to the listener: hold a connection slot by sending its request headers
slowly, or make the accept loop spin when the process runs out of file descriptors.

Waitress's own timeout only counts idle time, so a client sending a header line every few
seconds held its slot for as long as it liked (25 of them held every slot of a test server and
/healthz timed out). Here the headers of a request must arrive within REQUEST_HEADER_TIMEOUT of
its first byte (of the connection, for the first request); otherwise the client gets a 408 and
the connection is closed. Both guards run on the server loop's thread, between its turns.
"""

from __future__ import annotations

import errno
import logging
import resource
import time
from typing import Any, Callable

from appliance.api.http.errors import raw_response
from appliance.core import sensors
from appliance.core.ids import new_id
from appliance.core.logs import RateLimitFilter
from appliance.core.process import StartupError

log = logging.getLogger("appliance.server.guards")
log.addFilter(RateLimitFilter(30.0))
FD_HEADROOM = 64  # descriptors besides connections: listener, spool, metrics, Kafka, pipes
ACCEPT_PAUSE = 0.5  # seconds without accepting after the process ran out of descriptors


class HeaderClock:
    """Mixed into the channel: when the headers of the request in progress began to arrive."""

    header_started: float | None = None

    def start_header_clock(self) -> None:
        self.header_started = time.monotonic()

    def received(self, data: bytes) -> bool:
        if self.request is None and self.header_started is None and data:
            self.start_header_clock()  # the first bytes of a new request on this connection
        result = super().received(data)
        if self.request is None or self.request.headers_finished:
            self.header_started = None
        return result


def close_slow_clients(channels, timeout: float) -> int:
    """Answer 408 and close every connection whose request headers are overdue."""
    now, closed = time.monotonic(), 0
    for channel in list(channels):
        started = getattr(channel, "header_started", None)
        if started is None or now - started < timeout or channel.requests:
            continue
        channel.header_started = None
        answer = raw_response(408, f"request headers not received within {timeout:g} s", new_id())
        try:
            channel.write_soon(answer)
        except Exception:  # the client is gone already: just close
            channel.will_close = True
        channel.close_when_flushed = True
        closed += 1
    if closed:
        sensors.on_header_timeouts(closed)
        log.warning("closed connections whose request headers were too slow",
                    extra={"connections": closed, "timeout_s": timeout})
    return closed


class AcceptGuard:
    """When accept() fails for lack of descriptors, stop accepting for ACCEPT_PAUSE: the
    listener stays readable otherwise, and the loop would spin logging the same error."""

    def __init__(self, server) -> None:
        self.server = server  # whose ``accepting`` is turned off and on again
        self.resume_at: float | None = None

    def accept(self, accept: Callable[[], Any]) -> Any:
        """``accept()``, or None when the process is out of descriptors."""
        try:
            return accept()
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            self.server.accepting = False
            self.resume_at = time.monotonic() + ACCEPT_PAUSE
            sensors.on_accept_error()
            log.warning("out of file descriptors: not accepting for a moment",
                        extra={"error": str(exc), "pause_s": ACCEPT_PAUSE})
            return None

    def tick(self) -> None:
        if self.resume_at is not None and time.monotonic() >= self.resume_at:
            self.resume_at = None
            self.server.accepting = True


def ensure_fd_limit(connection_limit: int) -> None:
    """Raise the soft limit on open files to what CONNECTION_LIMIT needs when the hard limit
    allows; a one-line startup error naming both numbers when it does not."""
    needed = connection_limit + FD_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise StartupError(f"CONNECTION_LIMIT={connection_limit} needs {needed} open files, but the "
                           f"limit is {soft} (hard limit {hard}): raise it (ulimit -n) or lower "
                           f"CONNECTION_LIMIT to at most {hard - FD_HEADROOM}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    log.info("raised the open-file limit", extra={"from": soft, "to": needed, "hard": hard})

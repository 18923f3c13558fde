"""What no client may do with a connection: send its request slowly, keep it idle for long, or
hold the last free slot while others wait.

- **A request in time.** Waitress's own timeout only counts idle time, so a client sending a
  header line every few seconds held its slot for as long as it liked (25 of them held every
  slot of a test server and /healthz timed out). Here a request's headers must arrive within
  REQUEST_HEADER_TIMEOUT of its first byte (of the connection, for the first request), and its
  body within REQUEST_BODY_TIMEOUT of its headers; otherwise 408 and the connection is closed.
- **Idle keep-alive connections** are closed after KEEPALIVE_TIMEOUT (nginx's
  keepalive_timeout): Waitress kept them for its channel_timeout, 120 s (127.8 s measured), and
  2,000 connections that each sent one GET / and stayed silent took GET / away from everyone.
- **At the connection limit**, while a new connection waits, the connection idle the longest is
  closed to make room (one between requests, or one silent since it connected FRESH_GRACE ago):
  a client that sends a request is served whatever others hold open.

All of it runs on the server loop's thread, between its turns (serving/server.py).
"""

from __future__ import annotations

import logging
import select
import socket
import time
from typing import Iterable

from appliance.api.http.errors import raw_response
from appliance.core import sensors
from appliance.core.ids import new_id
from appliance.core.logs import RateLimitFilter

log = logging.getLogger("appliance.server.connections")
log.addFilter(RateLimitFilter(30.0))
FRESH_GRACE = 1.0  # seconds a new, silent connection is safe from being closed to make room


class RequestClock:
    """Mixed into the channel: since when the headers, then the body, of the request in
    progress have been arriving; nothing while the connection is between requests."""

    header_started: float | None = None
    body_started: float | None = None

    def start_header_clock(self) -> None:
        self.header_started = time.monotonic()

    def received(self, data: bytes) -> bool:
        if self.request is None and self.header_started is None and data:
            self.start_header_clock()  # the first bytes of a new request on this connection
        result = super().received(data)
        request = self.request
        if request is None:  # completed, or nothing in progress
            self.header_started = self.body_started = None
        elif request.headers_finished:
            self.header_started = None
            if self.body_started is None:
                self.body_started = time.monotonic()
        return result

    def between_requests(self) -> bool:
        """Served what it asked, nothing asked since: an idle keep-alive connection."""
        return (self.request is None and self.header_started is None and not self.requests
                and not self.total_outbufs_len)


def _overdue(channel, now: float, header_timeout: float, body_timeout: float) -> str | None:
    if channel.requests:
        return None  # a request of it is being answered: its next one can wait
    if channel.header_started is not None and now - channel.header_started >= header_timeout:
        return f"request headers not received within {header_timeout:g} s"
    if channel.body_started is not None and now - channel.body_started >= body_timeout:
        return f"request body not received within {body_timeout:g} s"
    return None


def close_slow_clients(channels: Iterable, header_timeout: float, body_timeout: float) -> int:
    """Answer 408 and close every connection whose request is overdue."""
    now, closed = time.monotonic(), 0
    for channel in list(channels):
        if not isinstance(channel, RequestClock):
            continue  # the listener, the loop's trigger
        reason = _overdue(channel, now, header_timeout, body_timeout)
        if reason is None:
            continue
        channel.header_started = channel.body_started = None
        try:
            channel.write_soon(raw_response(408, reason, new_id()))
        except Exception:  # the client is gone already: just close
            channel.will_close = True
        channel.close_when_flushed = True
        closed += 1
    if closed:
        sensors.on_header_timeouts(closed)
        log.warning("closed connections whose requests were too slow",
                    extra={"connections": closed, "header_timeout_s": header_timeout,
                           "body_timeout_s": body_timeout})
    return closed


def close_idle(channels: Iterable, timeout: float) -> int:
    """Close every keep-alive connection idle for ``timeout`` seconds or more."""
    cutoff, closed = time.time() - timeout, 0
    for channel in list(channels):
        if isinstance(channel, RequestClock) and channel.between_requests() \
                and channel.last_activity <= cutoff:
            channel.handle_close()
            closed += 1
    if closed:
        sensors.on_idle_closed(closed)
    return closed


def someone_waits(listener: socket.socket) -> bool:
    """A connection is waiting to be accepted (the listening socket is readable now)."""
    poll = select.poll()
    poll.register(listener.fileno(), select.POLLIN)
    return bool(poll.poll(0))


def evictable(channel: RequestClock, now: float) -> bool:
    """Idle between requests, or connected FRESH_GRACE ago or more and silent since: a new
    connection gets that long to send its first bytes before it may be closed for another."""
    if channel.between_requests():
        return True
    return (channel.request is None and not channel.requests and not channel.total_outbufs_len
            and channel.header_started is not None and now - channel.header_started >= FRESH_GRACE)


def make_room(channels: Iterable) -> bool:
    """Close the connection idle the longest, one that has no request in progress; False when
    none may be closed (then the new one waits, as before the limit)."""
    now = time.monotonic()
    idle = [c for c in channels if isinstance(c, RequestClock) and evictable(c, now)]
    if not idle:
        return False
    oldest = min(idle, key=lambda channel: channel.last_activity)
    oldest.handle_close()
    sensors.on_connection_evicted()
    log.warning("at the connection limit: closed the connection idle the longest",
                extra={"idle_s": round(time.time() - oldest.last_activity, 1)})
    return True

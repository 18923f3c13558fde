"""Waitress, through its extension points: a server class, a channel class, a map of our own.

Everything the appliance needs of Waitress beyond ``create_server`` is here, and only here:
- ``Server`` is a ``TcpWSGIServer`` built as ``create_server`` builds one for a socket bound
  beforehand (the constructor's ``_sock`` argument is how Waitress itself passes it), on a
  connection map the appliance owns, so it can count connections without reading Waitress's
  attributes. Its ``accept()`` goes through the appliance's accept policy (serving/guards.py,
  serving/balance.py) in one fixed order.
- ``Channel`` is Waitress's ``HTTPChannel`` with the request clock (serving/connections.py) and with
  Waitress's own errors (a malformed request line, headers or a body over its hard cap) answered
  as the appliance's JSON errors (api/http/errors.py).

tests/test_waitress_adapter.py fails loudly when a Waitress release changes what this relies on.
Known to work with Waitress 3.0.
"""

from __future__ import annotations

import logging
import socket
from typing import Callable

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher

from appliance.api.http.errors import error_response
from appliance.api.http.middleware import UNMATCHED_ROUTE, access_log
from appliance.api.serving.connections import RequestClock
from appliance.core.ids import new_id

Accept = Callable[[], "tuple[socket.socket, object] | None"]


class JsonErrorTask(ErrorTask):
    """Waitress's own errors as our JSON, with a request id and an access line like every
    other response."""

    def execute(self) -> None:
        error = self.request.error
        request_id = new_id()
        status, headers, body = error_response(error.code, error.reason.lower(), request_id)
        self.status = status
        self.response_headers.extend(headers)
        access_log.info("request", extra={
            "method": getattr(self.request, "command", None) or "", "route": UNMATCHED_ROUTE,
            "path": getattr(self.request, "path", None) or "", "status": error.code, "duration_ms": 0.0,
            "user_ip": self.channel.addr[0] if self.channel.addr else "", "request_id": request_id})
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class Channel(RequestClock, HTTPChannel):
    error_task_class = JsonErrorTask

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.start_header_clock()  # a connection that sends nothing holds a slot too


class Server(TcpWSGIServer):
    """One listening socket, bound beforehand, served on ``connections`` (our map)."""

    channel_class = Channel

    def __init__(self, app: Callable, sock: socket.socket, connections: dict,
                 dispatcher: ThreadedTaskDispatcher, accept_policy: Callable[[Accept], object],
                 **adjustments) -> None:
        self.accept_policy = accept_policy
        super().__init__(app, map=connections, _sock=sock, dispatcher=dispatcher,
                         adj=Adjustments(**adjustments), bind_socket=False,
                         sockinfo=(sock.family, sock.type, sock.proto, sock.getsockname()))

    def accept(self):
        return self.accept_policy(super().accept)

    @property
    def connection_limit(self) -> int:
        """Waitress counts the listener and its trigger among the connections of the limit."""
        return self.adj.connection_limit


def dispatcher(threads: int, queue_logger: logging.Logger | object) -> ThreadedTaskDispatcher:
    """The request threads; ``queue_logger`` takes Waitress's "Task queue depth" warnings."""
    threads_ = ThreadedTaskDispatcher()
    threads_.set_thread_count(threads)
    threads_.queue_logger = queue_logger
    return threads_


def pending_output(channel) -> int:
    """Bytes a channel still has to send (0 for the listener and the trigger)."""
    return getattr(channel, "total_outbufs_len", 0)

"""Waitress, as api/serving/waitress_adapter.py relies on it: these fail loudly, naming what
changed, when a Waitress release moves the parts the adapter builds on; and the adapter's
server answers a real request through the appliance's accept policy."""

from __future__ import annotations

import http.client
import inspect
import threading

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher

from appliance.api.serving import waitress_adapter
from appliance.api.serving.server import bind


def test_the_server_class_is_still_built_from_a_socket_bound_beforehand():
    parameters = inspect.signature(TcpWSGIServer.__init__).parameters
    for name in ("application", "map", "_sock", "dispatcher", "adj", "sockinfo", "bind_socket"):
        assert name in parameters, f"TcpWSGIServer.__init__ has no {name!r} any more"
    assert callable(getattr(TcpWSGIServer, "accept", None)), "the server has no accept()"
    assert TcpWSGIServer.channel_class is HTTPChannel, "channel_class is not the hook it was"


def test_the_channel_and_task_parts_the_guards_use_are_still_there():
    assert callable(getattr(HTTPChannel, "received", None)), "HTTPChannel.received is gone"
    assert HTTPChannel.error_task_class is ErrorTask, "error_task_class is not the hook it was"
    for name in ("write_soon", "close_when_flushed", "will_close"):
        assert hasattr(HTTPChannel, name), f"HTTPChannel.{name} is gone"
    assert "queue_logger" in vars(ThreadedTaskDispatcher), "the dispatcher's queue_logger is gone"


def test_the_adapter_serves_a_request_through_the_accept_policy():
    accepted = []

    def policy(accept):
        connection = accept()
        accepted.append(connection is not None)
        return connection

    connections: dict = {}
    seen: list[type] = []

    def app(environ, start_response):
        seen.extend(type(channel) for channel in list(connections.values()))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"served"]

    sock = bind("127.0.0.1", 0)
    threads = waitress_adapter.dispatcher(2, waitress_adapter.ThreadedTaskDispatcher.queue_logger)
    waitress_adapter.Server(app, sock, connections, threads, policy, threads=2)  # joins the map
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            wasyncore.loop(timeout=0.05, map=connections, use_poll=True, count=1)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        client = http.client.HTTPConnection("127.0.0.1", sock.getsockname()[1], timeout=5)
        client.request("GET", "/")
        assert client.getresponse().read() == b"served"
        client.close()
    finally:
        stop.set()
        thread.join(5)
        threads.shutdown(cancel_pending=True, timeout=1)
        wasyncore.close_all(connections)
    assert accepted == [True]
    assert waitress_adapter.Channel in seen, "the request came over a channel not of our class"

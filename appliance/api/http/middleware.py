"""WSGI middleware around the Bottle app: request ids, real client, access log, events.

It sees every exchange, including 404/405 and errors raised before a route runs, which a Bottle
plugin would not.
"""

from __future__ import annotations

import io
import logging
import time
from typing import Any, Callable, Iterable

from appliance.api.http import clientip
from appliance.api.http.errors import error_response
from appliance.api.http.faults import FaultPolicy
from appliance.api.http.host import HostInfo
from appliance.api.http.lifecycle import Lifecycle
from appliance.api.http.sink import EventSink
from appliance.core import logs, sensors, tracing
from appliance.core.config import Settings
from appliance.core.ids import new_id
from appliance.schema import events
from appliance.schema.vocabulary import REQUEST_ID

access_log = logging.getLogger("appliance.access")
UNMATCHED_ROUTE = "unmatched"  # one label for every unknown path: bounded cardinality
# Any other method a client invents is counted as "other": label values stay bounded.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
STATUS_TEXT = {code: str(code) for code in range(100, 600)}  # the status label, made once

StartResponse = Callable[..., Any]
BODY_HEADERS = frozenset({"Content-Type", "Content-Length"})


class AuditMiddleware:
    def __init__(self, app: Callable, settings: Settings, sink: EventSink,
                 host: HostInfo, lifecycle: Lifecycle, faults: FaultPolicy | None = None) -> None:
        self.app = app
        self.settings = settings
        self.sink = sink
        self.host = host
        self.lifecycle = lifecycle
        self.faults = faults
        self.durable = settings.event_durability == "sync"
        self.resolve_client = clientip.remembering_resolver(settings.trusted_proxies)

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        if not tracing.enabled():
            return self._handle(environ, start_response, None)
        with tracing.server_span(environ, environ.get("REQUEST_METHOD", "")) as span:
            environ["sts.trace_id"] = tracing.trace_id_of(span)
            return self._handle(environ, start_response, span)

    def _handle(self, environ: dict, start_response: StartResponse, span) -> Iterable[bytes]:
        started = time.perf_counter()
        offered = environ.get("HTTP_X_REQUEST_ID")
        request_id = offered if REQUEST_ID.matches(offered) else new_id()
        client = self.resolve_client(environ.get("REMOTE_ADDR", ""), environ.get("HTTP_X_FORWARDED_FOR"))
        environ["sts.request_id"] = request_id
        environ["sts.client"] = client
        # As it came (PEP 3333: the bytes as latin-1): Bottle decodes PATH_INFO in place as
        # UTF-8 when it routes, and wsgi_text would then read a decoded path as latin-1 again.
        environ["sts.path"] = environ.get("PATH_INFO", "")
        # Bottle writes tracebacks to wsgi.errors; ours are logged as JSON by the error handler.
        environ["wsgi.errors"] = io.StringIO()
        captured: dict[str, Any] = {}

        def start(status: str, headers: list, exc_info=None):
            headers.append(("X-Request-ID", request_id))
            captured["status"] = int(status.split(" ", 1)[0])
            if captured["status"] < 200:  # RFC 9110: a 1xx has no content (Bottle adds a type)
                headers[:] = [(n, v) for n, v in headers if n not in BODY_HEADERS]
            return start_response(status, headers, exc_info)

        self.lifecycle.enter()
        try:
            body = self._respond(environ, start)
        except BaseException:
            self.lifecycle.leave()
            raise
        if not isinstance(body, list):  # streamed (an export): recorded once it is all sent
            return StreamedBody(body, lambda sent: self._finish(environ, captured, sent, started, None))
        self._finish(environ, captured, sum(map(len, body)), started, span)
        return body

    def _finish(self, environ: dict, captured: dict, sent: int, started: float, span) -> None:
        self.lifecycle.leave()
        status = captured.get("status", 500)
        self._record(environ, status, sent, started)
        if span is not None:
            describe_span(span, environ, status)

    def _respond(self, environ: dict, start: StartResponse) -> list[bytes] | Iterable[bytes]:
        length = environ.get("CONTENT_LENGTH") or "0"
        if length.isdigit() and int(length) > self.settings.max_body_bytes:
            # Refuse before reading: the client learns the limit and nothing is buffered.
            status, headers, body = error_response(
                413, f"body larger than {self.settings.max_body_bytes} bytes")
            start(status, headers)  # the X-Request-ID is added there, as for every answer
            return [body]
        injection = self.faults.apply(environ) if self.faults is not None else None
        if injection is not None:
            environ["sts.injected"] = injection.record()
            if injection.error:
                status, headers, body = error_response(500, "injected fault (FAULT_ERROR_RATE)")
                start(status, [*headers, ("X-Fault-Injected", "error")])
                return [body]
        result = self.app(environ, start)
        if environ.get("sts.streamed"):
            return result
        try:
            return list(result)  # our responses are small JSON documents
        finally:
            if hasattr(result, "close"):
                result.close()

    def _record(self, environ: dict, status: int, response_bytes: int, started: float) -> None:
        """One pass over the exchange: the access line, the metrics and the events share the
        values read here once."""
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        route_of = environ.get("bottle.route")
        route = route_of.rule if route_of is not None else UNMATCHED_ROUTE
        method, path = environ.get("REQUEST_METHOD", ""), wsgi_text(environ["sts.path"], "path")
        client, request_id = environ["sts.client"], environ["sts.request_id"]
        trace_id = environ.get("sts.trace_id")
        fields = {"method": method, "route": route, "path": path, "status": status,
                  "duration_ms": duration_ms, "user_ip": client.user_ip, "request_id": request_id}
        if trace_id:
            fields["trace_id"] = trace_id
        logs.write(access_log, logging.INFO, "request", fields)
        label = method if method in KNOWN_METHODS else "other"
        sensors.on_request(label, route, STATUS_TEXT.get(status) or str(status), duration_ms / 1000)
        if self.sink.enabled and path not in self.settings.events_exclude_paths:
            common = {
                "method": wsgi_text(method, "method"), "route": route, "path": path,
                "query": wsgi_text(environ.get("QUERY_STRING", ""), "query"),
                "user_ip": client.user_ip, "proxy_chain": client.proxy_chain,
                "user_agent": wsgi_text(environ.get("HTTP_USER_AGENT", ""), "user_agent"),
            }
            length = environ.get("CONTENT_LENGTH") or "0"
            request_bytes = int(length) if length.isdigit() else 0
            response = {**common, "status": status, "duration_ms": duration_ms,
                        "bytes": response_bytes}
            if "sts.injected" in environ:
                response["injected"] = environ["sts.injected"]
            common["bytes"] = request_bytes
            self._emit_events(environ, request_id, trace_id, common, response)

    def _emit_events(self, environ: dict, request_id: str, trace_id: str | None,
                     request: dict[str, Any], response: dict[str, Any]) -> None:
        host = self.host.hostname
        built = [events.make_event(events.HTTP_REQUEST, request_id, host, request, trace_id),
                 events.make_event(events.HTTP_RESPONSE, request_id, host, response, trace_id)]
        status = response["status"]
        if status >= 500:
            failure = environ.get("sts.exception")
            kind = type(failure).__name__ if failure else "HTTPError"
            if "injected" in response:
                kind = "InjectedFault"
            built.append(events.make_event(events.ERROR, request_id, host, {
                "method": request["method"], "route": request["route"], "path": request["path"],
                "status": status,
                "error": events.clip(kind, "error"),
                "message": events.clip(str(failure) if failure else "server error", "message"),
            }, trace_id))
        topic = self.settings.kafka_topic_events
        # EVENT_DURABILITY=sync: the answer leaves only once its events are on disk.
        self.sink.emit_all([(event, tracing.event_headers(topic, event)) for event in built],
                           durable=self.durable)


class StreamedBody:
    """A response sent as it is produced: in flight, and unrecorded, until it is all sent."""

    def __init__(self, chunks: Iterable[bytes], on_close: Callable[[int], None]) -> None:
        self.chunks, self.on_close, self.sent = chunks, on_close, 0

    def __iter__(self):
        for chunk in self.chunks:
            self.sent += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            if hasattr(self.chunks, "close"):
                self.chunks.close()
        finally:
            self.on_close(self.sent)


def wsgi_text(value: str, name: str) -> str:
    """A WSGI string (the request's bytes as latin-1, PEP 3333) as the text it was sent as
    (UTF-8, undecodable bytes replaced), cut to what the event schema keeps of it. ASCII, the
    usual case, is the same in both: nothing to convert."""
    if not value.isascii():
        value = value.encode("latin-1", "replace").decode("utf-8", "replace")
    return events.clip(value, name)


def describe_span(span, environ: dict, status: int) -> None:
    """HTTP semantic-convention attributes, known only once the route has run."""
    route = environ.get("bottle.route")
    method = environ.get("REQUEST_METHOD", "")
    span.update_name(f"{method} {route.rule}" if route is not None else method)
    span.set_attributes({
        "http.request.method": method, "url.path": wsgi_text(environ["sts.path"], "path"),
        "http.route": route.rule if route is not None else UNMATCHED_ROUTE,
        "http.response.status_code": status, "client.address": environ["sts.client"].user_ip,
        "network.peer.address": environ.get("REMOTE_ADDR", ""),
        "user_agent.original": environ.get("HTTP_USER_AGENT", ""),
        "appliance.request_id": environ["sts.request_id"],
    })
    if status >= 500:
        from opentelemetry.trace import Status, StatusCode
        span.set_status(Status(StatusCode.ERROR))

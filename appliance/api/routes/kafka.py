"""/kafka/publish, /kafka/status, /kafka/flush."""

from __future__ import annotations

import hmac
from typing import Any

import bottle

from appliance.schema import events
from appliance.core import tracing
from appliance.api.services import Services
from appliance.api.jsonio import BadRequest, error_response, json_response, read_json_object

FLUSH_MAX_TIMEOUT = 30.0  # seconds: a flush request never holds a worker thread longer
NOT_CONFIGURED = "Kafka is not configured (set KAFKA_BROKERS)"


def authorized(services: Services) -> bool:
    token = services.settings.api_token
    if token is None:
        return True
    header = bottle.request.get_header("Authorization", "")
    scheme, _, offered = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(offered.strip().encode(), token.encode())


def unauthorized() -> bottle.HTTPResponse:
    return error_response(401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"})


def validate_publish(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    unknown = sorted(set(body) - {"event_type", "payload"})
    if unknown:
        raise BadRequest(400, f"unknown field(s): {', '.join(unknown)}")
    event_type = body.get("event_type")
    if not isinstance(event_type, str) or not events.EVENT_TYPE_RE.match(event_type):
        raise BadRequest(400, "event_type must be 1-64 characters of [a-z0-9_.-]")
    if event_type in events.RESERVED_TYPES:
        raise BadRequest(400, f"event_type '{event_type}' is reserved for the appliance")
    payload = body.get("payload", {})
    if not isinstance(payload, dict):
        raise BadRequest(400, "payload must be a JSON object")
    return event_type, payload


def parse_timeout(raw: str | None) -> float:
    if raw is None:
        return 5.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= FLUSH_MAX_TIMEOUT:  # also rejects nan
        raise BadRequest(400, f"timeout must be a number of seconds from 0 to {FLUSH_MAX_TIMEOUT:g}")
    return value


def add_kafka_routes(app: bottle.Bottle, services: Services) -> None:
    settings, sink = services.settings, services.sink

    @app.post("/kafka/publish")
    def publish():
        if not authorized(services):
            return unauthorized()
        try:
            event_type, payload = validate_publish(
                read_json_object(bottle.request, settings.max_body_bytes))
        except BadRequest as exc:
            return error_response(exc.status, exc.message)
        if not settings.kafka_enabled:
            return error_response(503, NOT_CONFIGURED)
        environ = bottle.request.environ
        event = events.make_event(event_type, environ["sts.request_id"], services.host.hostname,
                                  payload, environ.get("sts.trace_id"))
        # durable: "spooled" must mean on disk, so a client told 202 never loses its event.
        outcome = tracing.emit_traced(sink, settings.kafka_topic_events, event, durable=True)
        if outcome == "lost":
            return error_response(503, "event could not be queued or spooled; not accepted")
        return json_response(202, {"event_id": event["event_id"], "status": outcome})

    @app.get("/kafka/status")
    def status():
        if not settings.kafka_enabled:
            return error_response(503, NOT_CONFIGURED)
        body = sink.status()
        return json_response(200 if body["connected"] else 503, body)

    @app.post("/kafka/flush")
    def flush():
        if not authorized(services):
            return unauthorized()
        try:
            timeout = parse_timeout(bottle.request.query.get("timeout"))
        except BadRequest as exc:
            return error_response(exc.status, exc.message)
        if not settings.kafka_enabled:
            return error_response(503, NOT_CONFIGURED)
        if not sink.kafka_up:
            return json_response(503, {"error": "Kafka is not reachable", "status": 503,
                                       "remaining": sink.status()["in_queue"]})
        remaining = sink.flush(timeout)
        return json_response(200, {"remaining": remaining, "flushed": remaining == 0})

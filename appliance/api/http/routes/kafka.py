"""POST /kafka/publish, GET /kafka/status, POST /kafka/flush."""

from __future__ import annotations

from typing import Any

import bottle

from appliance.api.http.errors import HttpError
from appliance.api.http.jsonio import json_response, read_json_object
from appliance.api.http.queries import refuse_unknown
from appliance.api.http.services import Services
from appliance.core import tracing
from appliance.schema import events, vocabulary

FLUSH_MAX_TIMEOUT = 30.0  # seconds: a flush request never holds a worker thread longer
NOT_CONFIGURED = "Kafka is not configured (set KAFKA_BROKERS)"


def validate_publish(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    unknown = sorted(set(body) - {"event_type", "payload"})
    if unknown:
        raise HttpError(400, f"unknown field(s): {', '.join(unknown)}")
    event_type = body.get("event_type")
    if not events.is_event_type(event_type):
        raise HttpError(400, f"event_type must be {vocabulary.EVENT_TYPE.expected}")
    if event_type in events.RESERVED_TYPES:
        raise HttpError(400, f"event_type '{event_type}' is reserved for the appliance")
    payload = body.get("payload", {})
    if not isinstance(payload, dict):
        raise HttpError(400, "payload must be a JSON object")
    return event_type, payload


def parse_timeout(raw: str | None) -> float:
    if raw is None:
        return 5.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= FLUSH_MAX_TIMEOUT:  # also rejects nan
        raise HttpError(400, f"timeout must be a number of seconds from 0 to {FLUSH_MAX_TIMEOUT:g}")
    return value


def add_kafka_routes(app: bottle.Bottle, services: Services) -> None:
    settings, sink = services.settings, services.sink

    def require_kafka() -> None:
        if not settings.kafka_enabled:
            raise HttpError(503, NOT_CONFIGURED)

    @app.post("/kafka/publish")
    def publish():
        event_type, payload = validate_publish(read_json_object(bottle.request, settings.max_body_bytes))
        require_kafka()
        environ = bottle.request.environ
        event = events.make_event(event_type, environ["sts.request_id"], services.host.hostname,
                                  payload, environ.get("sts.trace_id"))
        # durable: "spooled" must mean on disk, so a client told 202 never loses its event.
        outcome = tracing.emit_traced(sink, settings.kafka_topic_events, event, durable=True)
        if outcome == "lost":
            raise HttpError(503, "event could not be queued or spooled; not accepted")
        return json_response(202, {"event_id": event["event_id"], "status": outcome})

    @app.get("/kafka/status")
    def status():
        require_kafka()
        state = sink.status()
        return json_response(200 if state.connected else 503, state.to_json())

    @app.post("/kafka/flush")
    def flush():
        refuse_unknown(bottle.request.query, {"timeout"})
        timeout = parse_timeout(bottle.request.query.get("timeout"))
        require_kafka()
        if not sink.kafka_up:
            raise HttpError(503, "Kafka is not reachable", {"remaining": sink.status().in_queue})
        remaining = sink.flush(timeout)
        return json_response(200, {"remaining": remaining, "flushed": remaining == 0})

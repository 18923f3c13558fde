"""The event schema (version 1) and the builders the API uses.

Every event is one JSON object::

    {"schema": 1, "event_id": "<uuid4>", "event_type": "http_request", "occurred_at": "...Z",
     "hostname": "...", "request_id": "...", "trace_id": "<32 hex>" | null, "payload": {...}}

``http_request`` payload: method, route, path, query, user_ip, proxy_chain, user_agent, bytes.
``http_response`` payload: the same plus status, duration_ms, and bytes of the response body.
``error`` payload: method, route, path, status, error (class name), message.
Any other ``event_type`` is a custom event from ``POST /kafka/publish``; its payload is the
caller's object. The Kafka key is the request_id, so one request's events share a partition.
"""

from __future__ import annotations

import json
import re
from typing import Any

from appliance.core.ids import new_id
from appliance.core.timefmt import utc_now_iso

SCHEMA_VERSION = 1
HTTP_REQUEST, HTTP_RESPONSE, ERROR = "http_request", "http_response", "error"
RESERVED_TYPES = frozenset({HTTP_REQUEST, HTTP_RESPONSE, ERROR})
EVENT_TYPE_RE = re.compile(r"^[a-z0-9_.-]{1,64}$")


def type_label(event_type: str) -> str:
    """Custom event types are the caller's: one metric label for all of them."""
    return event_type if event_type in RESERVED_TYPES else "custom"


def make_event(event_type: str, request_id: str, hostname: str, payload: dict[str, Any],
               trace_id: str | None = None) -> dict[str, Any]:
    return {
        "schema": SCHEMA_VERSION,
        "event_id": new_id(),
        "event_type": event_type,
        "occurred_at": utc_now_iso(),
        "hostname": hostname,
        "request_id": request_id,
        "trace_id": trace_id,
        "payload": payload,
    }


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()

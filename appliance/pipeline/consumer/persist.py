"""Turn Kafka messages into rows: one table per event type, dead letters for everything else.

Pure functions (no I/O) so the rules are tested without a broker; the consumer writes the rows.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from appliance.schema import audit_db, events

REQUEST_FIELDS = ("method", "route", "path", "query", "user_ip", "proxy_chain", "user_agent", "bytes")
TEXT_DEFAULTS = {"query": "", "proxy_chain": "", "user_agent": "", "bytes": 0}


class InvalidEvent(ValueError):
    """The message is not an event of schema 1; the text says what is wrong."""


@dataclass
class Batch:
    rows: dict[type, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    dead_letters: list[dict[str, Any]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(map(len, self.rows.values())) + len(self.dead_letters)


def _require(mapping: dict, name: str, kind: type | tuple, where: str = "") -> Any:
    value = mapping.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise InvalidEvent(f"field {where}{name} missing or not {_kind_name(kind)}")
    return value


def _kind_name(kind: type | tuple) -> str:
    names = {str: "a string", dict: "an object", int: "an integer", (int, float): "a number"}
    return names.get(kind, str(kind))


def parse_event(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        raise InvalidEvent("empty message")
    try:
        event = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidEvent(f"not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise InvalidEvent("not a JSON object")
    if event.get("schema") != events.SCHEMA_VERSION:
        raise InvalidEvent(f"unsupported schema {event.get('schema')!r} (expected {events.SCHEMA_VERSION})")
    for name in ("event_id", "event_type", "occurred_at", "request_id"):
        _require(event, name, str)
    if not events.EVENT_TYPE_RE.match(event["event_type"]):
        raise InvalidEvent(f"invalid event_type {event['event_type'][:80]!r}")
    _require(event, "payload", dict)
    trace_id = event.get("trace_id")
    if trace_id is not None and not isinstance(trace_id, str):
        raise InvalidEvent("field trace_id is not a string")
    return event


def _common(event: dict[str, Any], persisted_at: str) -> dict[str, Any]:
    return {
        "event_id": event["event_id"][:64], "request_id": event["request_id"][:128],
        "occurred_at": event["occurred_at"][:32], "trace_id": (event.get("trace_id") or None),
        "hostname": str(event.get("hostname") or "")[:255], "persisted_at": persisted_at,
    }


def _http_fields(payload: dict[str, Any]) -> dict[str, Any]:
    row = {}
    for name in ("method", "route", "path", "user_ip"):
        row[name] = _require(payload, name, str, "payload.")
    for name, default in TEXT_DEFAULTS.items():
        value = payload.get(name, default)
        row[name] = value if isinstance(value, type(default)) else default
    return row


def to_row(event: dict[str, Any], persisted_at: str) -> tuple[type, dict[str, Any]]:
    payload, kind = event["payload"], event["event_type"]
    row = _common(event, persisted_at)
    if kind == events.HTTP_REQUEST:
        return audit_db.HttpRequest, {**row, **_http_fields(payload)}
    if kind == events.HTTP_RESPONSE:
        return audit_db.HttpResponse, {
            **row, **_http_fields(payload),
            "status": _require(payload, "status", int, "payload."),
            "duration_ms": float(_require(payload, "duration_ms", (int, float), "payload.")),
        }
    if kind == events.ERROR:
        return audit_db.ErrorEvent, {
            **row, **{n: _require(payload, n, str, "payload.") for n in ("method", "route", "path", "error")},
            "status": _require(payload, "status", int, "payload."),
            "message": str(payload.get("message", "")),
        }
    return audit_db.CustomEvent, {**row, "event_type": kind,
                               "payload": json.dumps(payload, separators=(",", ":"))}


def dead_letter(msg, error: str, persisted_at: str) -> dict[str, Any]:
    raw = msg.value() or b""
    digest = hashlib.sha256(raw).hexdigest()[:16]
    return {
        "dedup_key": f"{msg.topic()}:{msg.partition()}:{msg.offset()}:{digest}",
        "topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(),
        "raw": raw, "error": error[:1000], "received_at": persisted_at,
    }


INT64 = 2 ** 63


def check_storable(row: dict[str, Any]) -> None:
    """SQLite refuses integers beyond 64 bits and strings with lone surrogates (UTF-8 cannot
    hold them); either would fail the whole batch again and again, so it is a dead letter."""
    for name, value in row.items():
        if isinstance(value, int) and not -INT64 <= value < INT64:
            raise InvalidEvent(f"field {name} does not fit in 64 bits")
        if isinstance(value, str):
            try:
                value.encode()
            except UnicodeEncodeError:
                raise InvalidEvent(f"field {name} is not valid UTF-8 text") from None


def classify(messages: list, persisted_at: str) -> Batch:
    batch = Batch()
    for msg in messages:
        try:
            model, row = to_row(parse_event(msg.value()), persisted_at)
            check_storable(row)
        except InvalidEvent as exc:
            batch.dead_letters.append(dead_letter(msg, str(exc), persisted_at))
            continue
        batch.rows[model].append(row)
    return batch

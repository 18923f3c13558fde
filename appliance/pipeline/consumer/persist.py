"""Turn Kafka messages into rows: one table per event type, dead letters for everything else.

Whatever the bytes, ``classify`` never raises: a message that cannot be stored exactly as it
came (nothing cut, nothing coerced) becomes a dead letter with the reason, and the batch goes
on. Every field is checked against the column it goes into: ids by format and length,
``occurred_at`` as an ISO-8601 UTC instant (normalised, so text order stays time order), numbers
finite and in range, text valid UTF-8 within its length.

Pure functions (no I/O), so the rules are tested without a broker; the writer stores the rows.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from appliance.core import jsontext
from appliance.core.timefmt import ISO_WIDTH, iso
from appliance.schema import audit_db, events
from appliance.schema.vocabulary import EVENT_ID, EVENT_INSTANT, REQUEST_ID, TRACE_ID, Word

FUTURE_SLACK = timedelta(days=1)  # clocks of N appliances differ; a day ahead is not a clock
TEXT_LIMITS = events.TEXT_LIMITS
OPTIONAL_TEXT = ("query", "proxy_chain", "user_agent")  # "" when absent
INT64 = 2 ** 63
MAX_DURATION_MS = 86_400_000.0  # a day: anything longer is not a measured request


class InvalidEvent(ValueError):
    """The message is not a storable event of schema 1; the text says what is wrong."""


@dataclass
class Batch:
    rows: dict[type, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    # Replayed dead letters that came back: (dedup_key, "persisted" or "failed", error or None)
    replays: list[tuple[str, str, str | None]] = field(default_factory=list)
    persisted_at: str = ""

    @property
    def count(self) -> int:
        return sum(map(len, self.rows.values())) + len(self.dead_letters)


# --- field rules -------------------------------------------------------------------------------


def text(mapping: dict, name: str, where: str = "", required: bool = True) -> str:
    value = mapping.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise InvalidEvent(f"field {where}{name} missing or not a string")
    if len(value) > TEXT_LIMITS.get(name, 255):
        raise InvalidEvent(f"field {where}{name} longer than {TEXT_LIMITS.get(name, 255)} characters")
    utf8(value, f"{where}{name}")
    return value


def utf8(value: str, name: str) -> None:
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 column can hold it
        raise InvalidEvent(f"field {name} is not valid UTF-8 text") from None


def matching(mapping: dict, name: str, word: Word) -> str:
    value = mapping.get(name)
    if not word.matches(value):
        shown = repr(value)[:80]
        raise InvalidEvent(f"field {name} missing or not of the form {word.pattern}: {shown}")
    return value


def integer(mapping: dict, name: str, low: int, high: int, where: str = "payload.") -> int:
    value = mapping.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidEvent(f"field {where}{name} missing or not an integer from {low} to {high}")
    return value


def number(mapping: dict, name: str, low: float, high: float, where: str = "payload.") -> float:
    value = mapping.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidEvent(f"field {where}{name} missing or not a number")
    try:
        value = float(value)
    except OverflowError:  # an integer of hundreds of digits
        raise InvalidEvent(f"field {where}{name} is out of range") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidEvent(f"field {where}{name} is not a number from {low:g} to {high:g}")
    return value


def occurred_at(event: dict) -> str:
    raw = event.get("occurred_at")
    if not isinstance(raw, str) or not EVENT_INSTANT.fullmatch(raw):
        raise InvalidEvent(f"field occurred_at is not an ISO-8601 UTC time like "
                           f"2026-01-31T12:00:00.000000Z: {repr(raw)[:80]}")
    try:
        moment = datetime.fromisoformat(raw[:-1]).replace(tzinfo=timezone.utc)
    except ValueError:
        raise InvalidEvent(f"field occurred_at is not a real time: {raw}") from None
    if moment > datetime.now(timezone.utc) + FUTURE_SLACK:
        raise InvalidEvent(f"field occurred_at is more than a day in the future: {raw}")
    # One width, so text order is time order. Six digits of fraction (what the API writes)
    # is that width already: formatting it again was 4.6 % of the consumer's time.
    return raw if len(raw) == ISO_WIDTH else iso(moment)


# --- events --------------------------------------------------------------------------------------


def parse_event(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        raise InvalidEvent("empty message")
    try:
        event = events.loads_strict(raw)
    except events.InvalidJson as exc:
        raise InvalidEvent(f"not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise InvalidEvent("not a JSON object")
    if event.get("schema") != events.SCHEMA_VERSION:
        raise InvalidEvent(f"unsupported schema {repr(event.get('schema'))[:40]} "
                           f"(expected {events.SCHEMA_VERSION})")
    if not events.is_event_type(event.get("event_type")):
        raise InvalidEvent(f"invalid event_type {repr(event.get('event_type'))[:80]}")
    if not isinstance(event.get("payload"), dict):
        raise InvalidEvent("field payload missing or not an object")
    return event


def common(event: dict[str, Any], persisted_at: str) -> dict[str, Any]:
    trace_id = event.get("trace_id")
    if trace_id is not None:
        matching(event, "trace_id", TRACE_ID)
    return {"event_id": matching(event, "event_id", EVENT_ID),
            "request_id": matching(event, "request_id", REQUEST_ID),
            "occurred_at": occurred_at(event), "trace_id": trace_id,
            "hostname": text(event, "hostname", required=False), "persisted_at": persisted_at}


def http_fields(payload: dict[str, Any]) -> dict[str, Any]:
    row = {name: text(payload, name, "payload.") for name in ("method", "route", "path", "user_ip")}
    row.update({name: text(payload, name, "payload.", required=False) for name in OPTIONAL_TEXT})
    row["bytes"] = integer(payload, "bytes", 0, INT64 - 1) if "bytes" in payload else 0
    row["user_ip_key"] = audit_db.ip_key(row["user_ip"])
    return row


INJECTED_KINDS = ("error", "delay")


def injected(payload: dict[str, Any]) -> dict[str, Any]:
    """A fault injected on purpose (api/http/faults.py), or nothing: an optional field."""
    marked = payload.get("injected")
    if marked is None:
        return {"injected_kind": None, "injected_value": None}
    if not isinstance(marked, dict) or marked.get("kind") not in INJECTED_KINDS:
        raise InvalidEvent(f"field payload.injected is not {{kind: error|delay, value}}: {repr(marked)[:80]}")
    return {"injected_kind": marked["kind"],
            "injected_value": integer(marked, "value", 0, INT64 - 1, "payload.injected.")}


def to_row(event: dict[str, Any], persisted_at: str) -> tuple[type, dict[str, Any]]:
    payload, kind = event["payload"], event["event_type"]
    row = common(event, persisted_at)
    if kind == events.HTTP_REQUEST:
        return audit_db.HttpRequest, {**row, **http_fields(payload)}
    if kind == events.HTTP_RESPONSE:
        return audit_db.HttpResponse, {
            **row, **http_fields(payload), "status": integer(payload, "status", 100, 599),
            "duration_ms": number(payload, "duration_ms", 0.0, MAX_DURATION_MS),
            **injected(payload)}
    if kind == events.ERROR:
        return audit_db.ErrorEvent, {
            **row, **{n: text(payload, n, "payload.") for n in ("method", "route", "path", "error")},
            "status": integer(payload, "status", 100, 599),
            "message": text(payload, "message", "payload.", required=False)}
    try:
        encoded = jsontext.dumps(payload).decode()
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 column can hold it
        raise InvalidEvent("field payload is not valid UTF-8 text") from None
    return audit_db.CustomEvent, {**row, "event_type": kind, "payload": encoded}


def replay_of(msg) -> str | None:
    """The dead letter a message is a replay of (its REPLAY_HEADER), or None."""
    headers = msg.headers() if hasattr(msg, "headers") else None
    for name, value in headers or ():
        if name == events.REPLAY_HEADER and value:
            return value.decode("utf-8", "replace")[:400]
    return None


def dead_letter(msg, error: str, persisted_at: str) -> dict[str, Any]:
    raw = msg.value() or b""
    digest = hashlib.sha256(raw).hexdigest()[:16]
    # A replay that fails again keeps the key of the dead letter it came from: still one row.
    key = replay_of(msg) or f"{msg.topic()}:{msg.partition()}:{msg.offset()}:{digest}"
    return {
        "dedup_key": key,
        "topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(),
        "raw": raw, "error": error[:1000].encode("utf-8", "replace").decode(),
        "received_at": persisted_at,
    }


def classify(messages: list, persisted_at: str) -> Batch:
    batch = Batch(persisted_at=persisted_at)
    for msg in messages:
        try:
            model, row = to_row(parse_event(msg.value()), persisted_at)
        except InvalidEvent as exc:
            refuse(batch, msg, str(exc), persisted_at)
            continue
        except Exception as exc:  # whatever the bytes: no message may stop the consumer
            refuse(batch, msg, f"{type(exc).__name__}: {exc}", persisted_at)
            continue
        batch.rows[model].append(row)
        if (key := replay_of(msg)) is not None:
            batch.replays.append((key, "persisted", None))
    return batch


def refuse(batch: Batch, msg, error: str, persisted_at: str) -> None:
    letter = dead_letter(msg, error, persisted_at)
    batch.dead_letters.append(letter)
    if replay_of(msg) is not None:
        batch.replays.append((letter["dedup_key"], "failed", letter["error"]))

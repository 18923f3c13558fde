"""What the consumer stores, and what it refuses as a dead letter instead of failing a batch."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from appliance.pipeline.consumer import persist
from appliance.schema import audit_db, events


class Message:
    def __init__(self, value: bytes | None, offset: int = 7) -> None:
        self._value, self._offset = value, offset

    def value(self):
        return self._value

    def topic(self):
        return "simple-time-events"

    def partition(self):
        return 1

    def offset(self):
        return self._offset


def event(event_type: str, payload: dict) -> bytes:
    # ensure_ascii: a lone surrogate travels as the JSON escape \ud800, as another producer may send it
    return json.dumps(events.make_event(event_type, "rid-1", "host", payload)).encode()


HTTP = {"method": "GET", "route": "/", "path": "/", "user_ip": "203.0.113.9"}


def test_each_type_goes_to_its_table():
    batch = persist.classify([
        Message(event("http_request", HTTP)),
        Message(event("http_response", {**HTTP, "status": 200, "duration_ms": 1.5})),
        Message(event("error", {**HTTP, "status": 500, "error": "KeyError"})),
        Message(event("deploy.done", {"v": 1})),
    ], "now")
    assert {model: len(rows) for model, rows in batch.rows.items()} == {
        audit_db.HttpRequest: 1, audit_db.HttpResponse: 1, audit_db.ErrorEvent: 1, audit_db.CustomEvent: 1}
    assert batch.dead_letters == []


@pytest.mark.parametrize(("raw", "reason"), [
    (b"\x00garbage", "not JSON"),
    (b"[1]", "not a JSON object"),
    (None, "empty message"),
    (json.dumps({"schema": 2}).encode(), "unsupported schema"),
    (event("http_response", {**HTTP, "duration_ms": 1}), "payload.status"),
    (event("http_response", {**HTTP, "status": 10 ** 30, "duration_ms": 1}), "from 100 to 599"),
    (event("http_request", {**HTTP, "path": "/\ud800"}), "UTF-8"),
    (event("Bad Type", {}), "event_type"),
    (event("bad.type\n", {}), "event_type"),
])
def test_what_cannot_be_stored_becomes_a_dead_letter_with_the_reason(raw, reason):
    batch = persist.classify([Message(raw)], "now")
    assert batch.rows == {} and len(batch.dead_letters) == 1
    letter = batch.dead_letters[0]
    assert reason in letter["error"]
    assert (letter["topic"], letter["partition"], letter["offset"]) == ("simple-time-events", 1, 7)
    assert letter["raw"] == (raw or b"")


def envelope(**fields) -> bytes:
    """An http_response event with some envelope fields replaced."""
    base = events.make_event("http_response", "rid-1", "host", {**HTTP, "status": 200, "duration_ms": 1.5})
    return json.dumps({**base, **fields}).encode()


def nested(depth: int) -> bytes:
    inner = "[" * depth + "]" * depth
    return (b'{"schema": 1, "event_id": "e1", "event_type": "deep.nest", '
            b'"occurred_at": "2026-01-01T00:00:00Z", "request_id": "r", "payload": {"x": '
            + inner.encode() + b"}}")


POISON = [
    (nested(5000), "nested deeper"),  # RecursionError in the JSON parser
    (nested(40), "nested deeper"),  # parses, but deeper than events.MAX_DEPTH
    (envelope(payload={**HTTP, "status": 200, "duration_ms": int("9" * 400)}), "out of range"),
    (envelope(payload={**HTTP, "status": 200, "duration_ms": "1.5"}), "not a number"),
    (envelope(payload={**HTTP, "status": True, "duration_ms": 1.5}), "from 100 to 599"),
    (envelope(payload={**HTTP, "status": 200, "duration_ms": 1.5, "bytes": -1}), "payload.bytes"),
    (envelope(payload={**HTTP, "status": 200, "duration_ms": 1.5, "bytes": 2 ** 64}), "payload.bytes"),
    (envelope(event_id="x" * 65), "event_id"),
    (envelope(event_id="a b"), "event_id"),
    (envelope(request_id="<script>"), "request_id"),
    (envelope(trace_id="not-hex"), "trace_id"),
    (envelope(occurred_at="yesterday"), "occurred_at"),
    (envelope(occurred_at="2026-13-45T99:00:00Z"), "occurred_at"),
    (envelope(occurred_at="9999-12-31T23:59:59Z"), "future"),
    (envelope(hostname="h" * 300), "hostname"),
    (envelope(payload={**HTTP, "path": "/" + "p" * 9000, "status": 200, "duration_ms": 1}), "payload.path"),
    (b'{"schema": 1, "event_id": "e", "event_type": "http_response", '
     b'"payload": {"duration_ms": NaN}}', "NaN"),
    (b'{"schema": 1, "event_id": "e", "event_type": "x", "payload": {"v": Infinity}}', "Infinity"),
    (b'{"schema": 1, "event_id": "e", "event_type": "x", "payload": {"v": 1e400}}', "out of range"),
    (b"\xff\xfe\x00\x00garbage", "not JSON"),
    (json.dumps({"schema": 1}).encode() * 3, "not JSON"),
]


@pytest.mark.parametrize(("raw", "reason"), POISON)
def test_every_kind_of_poison_is_a_dead_letter_and_nothing_is_cut_or_coerced(raw, reason):
    good = Message(event("http_request", HTTP), offset=8)
    batch = persist.classify([Message(raw), good], "now")
    assert len(batch.dead_letters) == 1, batch.dead_letters
    assert reason in batch.dead_letters[0]["error"]
    assert batch.rows[audit_db.HttpRequest][0]["request_id"] == "rid-1"  # the batch goes on


def test_occurred_at_is_stored_in_the_one_fixed_width_form():
    for sent, stored in (("2026-01-31T12:00:00Z", "2026-01-31T12:00:00.000000Z"),
                         ("2026-01-31T12:00:00.5Z", "2026-01-31T12:00:00.500000Z"),
                         ("2026-01-31T12:00:00.123456Z", "2026-01-31T12:00:00.123456Z"),
                         ("0999-01-31T12:00:00.000001Z", "0999-01-31T12:00:00.000001Z")):
        batch = persist.classify([Message(envelope(occurred_at=sent))], "now")
        assert batch.rows[audit_db.HttpResponse][0]["occurred_at"] == stored, sent
    early = datetime(999, 1, 31, 12, 0, 0, 1, tzinfo=timezone.utc)
    assert persist.iso(early) == "0999-01-31T12:00:00.000001Z"


def test_any_exception_while_classifying_is_a_dead_letter_not_a_crash(monkeypatch):
    def explode(event, persisted_at):
        raise MemoryError("surprise")

    monkeypatch.setattr(persist, "to_row", explode)
    batch = persist.classify([Message(event("http_request", HTTP))], "now")
    assert batch.dead_letters[0]["error"] == "MemoryError: surprise"


def test_an_injected_fault_is_kept_with_its_response_and_a_bad_mark_is_a_dead_letter():
    response = {**HTTP, "status": 500, "duration_ms": 1.0}
    batch = persist.classify([
        Message(event("http_response", {**response, "injected": {"kind": "error", "value": 500}})),
        Message(event("http_response", {**response, "injected": {"kind": "delay", "value": 250}})),
        Message(event("http_response", response)),
        Message(event("http_response", {**response, "injected": {"kind": "chaos", "value": 1}})),
        Message(event("http_response", {**response, "injected": {"kind": "delay", "value": -1}})),
        Message(event("http_response", {**response, "injected": "yes"})),
    ], "now")
    rows = batch.rows[audit_db.HttpResponse]
    assert [(r["injected_kind"], r["injected_value"]) for r in rows] == [
        ("error", 500), ("delay", 250), (None, None)]
    assert [d["error"].split(":")[0] for d in batch.dead_letters] == [
        "field payload.injected is not {kind",
        "field payload.injected.value missing or not an integer from 0 to 9223372036854775807",
        "field payload.injected is not {kind"]

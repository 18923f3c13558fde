"""What the consumer stores, and what it refuses as a dead letter instead of failing a batch."""

from __future__ import annotations

import json

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
    (event("http_response", {**HTTP, "status": 10 ** 30, "duration_ms": 1}), "64 bits"),
    (event("http_request", {**HTTP, "path": "/\ud800"}), "UTF-8"),
    (event("Bad Type", {}), "event_type"),
])
def test_what_cannot_be_stored_becomes_a_dead_letter_with_the_reason(raw, reason):
    batch = persist.classify([Message(raw)], "now")
    assert batch.rows == {} and len(batch.dead_letters) == 1
    letter = batch.dead_letters[0]
    assert reason in letter["error"]
    assert (letter["topic"], letter["partition"], letter["offset"]) == ("simple-time-events", 1, 7)
    assert letter["raw"] == (raw or b"")

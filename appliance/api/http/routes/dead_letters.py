"""Dead letters as a workflow (admin plane): GET /events/dead-letters (by reason and time, paged),
GET /events/dead-letters/<id> (with its bytes), POST /events/dead-letters/replay (write token).

A replay hands the stored bytes to this API process's spool, as they are, with the header
``sts-dead-letter: <its dedup_key>``: from there they reach Kafka like any event, durably (a
Kafka that is down gets them later). The consumer writes a replayed event idempotently by its
event_id (a replay never duplicates a row), files one that fails again under the same dead
letter (never a second one), and notes on the dead letter when its copy came back and how it went.
The API itself still only reads the audit database.
"""

from __future__ import annotations

from typing import Any

import bottle

from appliance.api.http.errors import HttpError
from appliance.api.http.jsonio import json_response, read_json_object
from appliance.api.http.queries import parse_limit, parse_time, refuse_unknown
from appliance.api.http.routes.events import readable
from appliance.api.http.services import Services
from appliance.core import sensors
from appliance.schema import audit_read
from appliance.schema.audit_read import LetterSearch
from appliance.schema.events import REPLAY_HEADER

MAX_REASON = 200  # characters of a reason filter
MAX_REPLAY = 1000  # dead letters one replay sends
REPLAY_FIELDS = frozenset({"id", "reason", "all"})


def parse_reason(raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not 1 <= len(raw) <= MAX_REASON:
        raise HttpError(400, f"reason must be 1-{MAX_REASON} characters of the error text")
    return raw


def parse_cursor(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not (raw.startswith("d") and raw[1:].isascii() and raw[1:].isdigit() and len(raw) < 20):
        raise HttpError(400, "cursor is not one this appliance gave out")
    return int(raw[1:])


def list_search(query) -> LetterSearch:
    refuse_unknown(query, {"reason", "after", "before", "limit", "cursor"})
    return LetterSearch(reason=parse_reason(query.get("reason")),
                        after=parse_time("after", query.get("after")),
                        before=parse_time("before", query.get("before")),
                        below_id=parse_cursor(query.get("cursor")),
                        limit=parse_limit(query.get("limit")))


def replay_search(body: dict[str, Any]) -> LetterSearch:
    unknown = sorted(set(body) - REPLAY_FIELDS)
    if unknown:
        raise HttpError(400, f"unknown field(s): {', '.join(unknown)}")
    letter_id = body.get("id")
    if isinstance(letter_id, float) and letter_id.is_integer():  # 1.0 is JSON's integer 1
        letter_id = int(letter_id)
    if "id" in body and (isinstance(letter_id, bool) or not isinstance(letter_id, int)
                         or not 1 <= letter_id < 2**63):
        raise HttpError(400, "id must be a dead letter's id (a positive integer)")
    if "reason" in body and not isinstance(body["reason"], str):
        raise HttpError(400, f"reason must be 1-{MAX_REASON} characters of the error text")
    reason = parse_reason(body.get("reason"))
    if "all" in body and not isinstance(body["all"], bool):
        raise HttpError(400, "all must be true or false")
    if letter_id is None and reason is None and body.get("all") is not True:
        raise HttpError(400, "say which dead letters: id, reason, or all: true")
    return LetterSearch(reason=reason, ids=None if letter_id is None else (letter_id,),
                        limit=MAX_REPLAY)


def add_dead_letter_routes(app: bottle.Bottle, services: Services) -> None:
    url, sink = services.settings.database_url, services.sink

    @app.get("/events/dead-letters")
    def letters_list():
        search = list_search(bottle.request.query)
        found = readable(url, lambda: audit_read.dead_letters(search))
        page, below, reasons = found or ([], None, [])
        return json_response(200, {"dead_letters": page, "count": len(page), "limit": search.limit,
                                   "next": None if below is None else f"d{below}",
                                   "by_reason": reasons})

    @app.get("/events/dead-letters/<letter_id:int>")
    def letter_one(letter_id: int):
        refuse_unknown(bottle.request.query, set())
        found = None if letter_id >= 2**63 else readable(url, lambda: audit_read.dead_letter(letter_id))
        if found is None:
            raise HttpError(404, f"no dead letter {letter_id}")
        return json_response(200, found)

    @app.post("/events/dead-letters/replay")
    def letters_replay():
        refuse_unknown(bottle.request.query, set())
        search = replay_search(read_json_object(bottle.request, services.settings.max_body_bytes))
        if not sink.enabled:
            raise HttpError(503, "Kafka is not configured (set KAFKA_BROKERS): nothing to replay through")
        chosen = readable(url, lambda: audit_read.replayable(search)) or []
        if not chosen:
            return json_response(200, {"replayed": 0, "ids": [], "outcome": None})
        outcome = sink.emit_raw([(f"dead-letter-{letter_id}".encode(), raw,
                                  [(REPLAY_HEADER, key.encode())]) for letter_id, key, raw in chosen])
        if outcome == "lost":
            raise HttpError(503, "the spool refused the replay (full or failing): nothing was sent")
        sensors.on_dead_letters_replayed(len(chosen))
        return json_response(200, {"replayed": len(chosen), "ids": [i for i, _, _ in chosen],
                                   "outcome": outcome})

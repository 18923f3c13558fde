"""GET /events: recently persisted events, newest first.

Only reads: the consumer is the one writer of the audit database. Each request opens its own
read-only connection (peewee keeps one per thread), so a database recreated meanwhile is seen.
"""

from __future__ import annotations

import heapq
import json
from datetime import datetime, timezone
from typing import Any

import bottle
import peewee

from appliance.api.auth import token_required
from appliance.api.jsonio import HttpError, json_response
from appliance.api.services import Services
from appliance.core import sqlite
from appliance.core.timefmt import iso
from appliance.schema import audit_db, events

MAX_LIMIT, DEFAULT_LIMIT = 500, 50
ORDERS = ("occurred", "persisted")
TYPE_OF_MODEL = {model: name for name, model in audit_db.EVENT_TYPES.items()}


def parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise HttpError(400, f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def parse_time(name: str, raw: str | None) -> str | None:
    """An ISO-8601 instant, normalised to how occurred_at is stored (so text order is time order)."""
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise HttpError(400, f"{name} must be an ISO-8601 time, e.g. 2026-01-31T12:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return iso(moment)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-05:00 is past datetime's range in UTC
        raise HttpError(400, f"{name} is out of range") from None


def parse_type(raw: str | None) -> tuple[list[type], str | None]:
    """(models to read, custom event_type filter)."""
    if raw is None:
        return list(audit_db.EVENT_TYPES.values()), None
    if raw in audit_db.EVENT_TYPES:
        return [audit_db.EVENT_TYPES[raw]], None
    if raw == "dead_letter":
        return [audit_db.DeadLetter], None
    if events.is_event_type(raw):
        return [audit_db.CustomEvent], raw
    raise HttpError(400, "type must be http_request, http_response, error, custom, dead_letter "
                         "or a custom event type of [a-z0-9_.-]")


def parse_order(raw: str | None) -> str:
    if raw is None:
        return "occurred"
    if raw not in ORDERS:
        raise HttpError(400, "order must be occurred or persisted")
    return raw


def event_query(model, limit: int, before: str | None, after: str | None, custom_type: str | None,
                order: str = "occurred"):
    time_field = (model.received_at if model is audit_db.DeadLetter
                  else model.persisted_at if order == "persisted" else model.occurred_at)
    query = model.select().order_by(time_field.desc(), model.id.desc()).limit(limit)
    if before:
        query = query.where(time_field < before)
    if after:
        query = query.where(time_field > after)
    if custom_type:
        query = query.where(model.event_type == custom_type)
    return query


def as_event(model, row: peewee.Model) -> dict[str, Any]:
    data = {name: getattr(row, name) for name in model._meta.fields if name != "id"}
    if model is audit_db.DeadLetter:
        data["raw"] = bytes(data["raw"])[:2048].decode("utf-8", "replace")
        return {"event_type": "dead_letter", "occurred_at": data["received_at"], **data}
    if model is audit_db.CustomEvent:
        data["payload"] = json.loads(data["payload"])
        return data
    return {"event_type": TYPE_OF_MODEL[model], **data}


def read_events(services: Services, query: bottle.FormsDict) -> dict[str, Any]:
    limit = parse_limit(query.get("limit"))
    before, after = parse_time("before", query.get("before")), parse_time("after", query.get("after"))
    models, custom_type = parse_type(query.get("type"))
    order = parse_order(query.get("order"))
    if not services.settings.db_path.exists():
        return {"events": [], "count": 0, "limit": limit, "note": "no events persisted yet"}
    with audit_db.database.connection_context():
        per_table = [[as_event(m, row)
                      for row in event_query(m, limit, before, after, custom_type, order)]
                     for m in models]
    sort_key = "persisted_at" if order == "persisted" else "occurred_at"
    newest = heapq.merge(*per_table, key=lambda e: e.get(sort_key) or e["occurred_at"], reverse=True)
    found = list(newest)[:limit]
    return {"events": found, "count": len(found), "limit": limit}


def add_event_routes(app: bottle.Bottle, services: Services) -> None:
    # The API never writes the audit database: the models are bound to read-only connections.
    audit_db.database.initialize(sqlite.peewee_database(services.settings.db_path, readonly=True))

    @app.get("/events")
    @token_required(services.settings)  # events hold client IPs
    def events_():
        try:
            return json_response(200, read_events(services, bottle.request.query))
        except peewee.PeeweeException as exc:
            raise HttpError(503, f"events database not readable: {exc}") from None

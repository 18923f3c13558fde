"""GET /status (the agent's latest snapshot) and GET /events (recently persisted events).

Both only read: the consumer is the one writer of the events database, the agent of the status
database. Each request opens a read-only connection, so a database recreated meanwhile is seen.
"""

from __future__ import annotations

import heapq
import json
import time
from datetime import datetime, timezone
from typing import Any

import bottle
import peewee

from appliance.schema import events, status_db, audit_db
from appliance.api.jsonio import BadRequest, error_response, json_response
from appliance.api.routes.kafka import authorized, unauthorized
from appliance.api.services import Services
from appliance.core.version import __version__

STALE_INTERVALS = 3  # agent silent this many intervals -> its data is not current
MAX_LIMIT, DEFAULT_LIMIT = 500, 50
TYPE_MODELS = {"http_request": audit_db.HttpRequest, "http_response": audit_db.HttpResponse,
               "error": audit_db.ErrorEvent, "custom": audit_db.CustomEvent}
STARTED = time.time()


def readonly_db(path) -> peewee.SqliteDatabase:
    return peewee.SqliteDatabase(f"file:{path}?mode=ro", uri=True, pragmas={"busy_timeout": 2000})


# --- /events ---------------------------------------------------------------------------------


def parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(400, f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def parse_time(name: str, raw: str | None) -> str | None:
    """An ISO-8601 instant, normalised to how occurred_at is stored (so text order is time order)."""
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(400, f"{name} must be an ISO-8601 time, e.g. 2026-01-31T12:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return status_db.iso(moment.astimezone(timezone.utc))
    except OverflowError:  # e.g. 9999-12-31T23:59:59-05:00 is past datetime's range in UTC
        raise BadRequest(400, f"{name} is out of range") from None


def parse_type(raw: str | None) -> tuple[list[type], str | None]:
    """(models to read, custom event_type filter)."""
    if raw is None:
        return list(TYPE_MODELS.values()), None
    if raw in TYPE_MODELS:
        return [TYPE_MODELS[raw]], None
    if raw == "dead_letter":
        return [audit_db.DeadLetter], None
    if events.EVENT_TYPE_RE.match(raw):
        return [audit_db.CustomEvent], raw
    raise BadRequest(400, "type must be http_request, http_response, error, custom, dead_letter "
                          "or a custom event type of [a-z0-9_.-]")


ORDERS = ("occurred", "persisted")


def parse_order(raw: str | None) -> str:
    if raw is None:
        return "occurred"
    if raw not in ORDERS:
        raise BadRequest(400, "order must be occurred or persisted")
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
    return {"event_type": {v: k for k, v in TYPE_MODELS.items()}[model], **data}


def read_events(services: Services, query: bottle.FormsDict) -> dict[str, Any]:
    limit = parse_limit(query.get("limit"))
    before, after = parse_time("before", query.get("before")), parse_time("after", query.get("after"))
    models, custom_type = parse_type(query.get("type"))
    order = parse_order(query.get("order"))
    path = services.settings.db_path
    if not path.exists():
        return {"events": [], "count": 0, "limit": limit, "note": "no events persisted yet"}
    with audit_db.database.connection_context():
        per_table = [[as_event(m, row)
                      for row in event_query(m, limit, before, after, custom_type, order)]
                     for m in models]
    sort_key = "persisted_at" if order == "persisted" else "occurred_at"
    newest = heapq.merge(*per_table, key=lambda e: e.get(sort_key) or e["occurred_at"], reverse=True)
    found = list(newest)[:limit]
    return {"events": found, "count": len(found), "limit": limit}


# --- /status ---------------------------------------------------------------------------------


def read_status(services: Services, history_minutes: int) -> dict[str, Any]:
    base = {"version": __version__, "hostname": services.host.hostname,
            "api_uptime_s": round(time.time() - STARTED, 1)}
    path = services.settings.status_db_path
    if not path.exists():
        return {**base, "overall": "DOWN", "stale": True, "components": {},
                "agent": {"state": "DOWN", "detail": "the agent has never reported"}}
    with status_db.database.connection_context():
        report = status_db.AgentReport.get_or_none(id=1)
        components = {row.name: {"state": row.state, "detail": row.detail, "since": row.changed_at,
                                 "checked_at": row.checked_at, "data": json.loads(row.data)}
                      for row in status_db.ComponentState.select().order_by(status_db.ComponentState.name)}
        history = history_rows(history_minutes) if history_minutes else None
    agent = agent_state(report)
    states = {c["state"] for c in components.values()} | {agent["state"]}
    overall = "DOWN" if "DOWN" in states else "DEGRADED" if "DEGRADED" in states else "UP"
    body = {**base, "overall": overall, "stale": agent["state"] != "UP", "agent": agent,
            "components": components}
    if history is not None:
        body["history"] = history
    return body


def agent_state(report) -> dict[str, Any]:
    if report is None:
        return {"state": "DOWN", "detail": "the agent has never reported"}
    age = (datetime.now(timezone.utc) - status_db.parse_iso(report.reported_at)).total_seconds()
    state = "UP" if age <= STALE_INTERVALS * report.interval else "DOWN"
    detail = (f"reported {age:.1f} s ago" if state == "UP"
              else f"silent for {age:.0f} s (> {STALE_INTERVALS} intervals): data below is not current")
    return {"state": state, "detail": detail, "reported_at": report.reported_at,
            "age_s": round(age, 1), "interval_s": report.interval}


def history_rows(minutes: int) -> dict[str, list]:
    since = status_db.iso(datetime.fromtimestamp(time.time() - minutes * 60, timezone.utc))
    rows = (status_db.StatusHistory.select()
            .where(status_db.StatusHistory.at >= since).order_by(status_db.StatusHistory.at))
    history: dict[str, list] = {}
    for row in rows:
        history.setdefault(row.name, []).append([row.at, row.state, json.loads(row.data)])
    return history


def parse_history(raw: str | None) -> int:
    if raw is None:
        return 0
    if not (raw.isascii() and raw.isdigit()) or int(raw) > 60:
        raise BadRequest(400, "history must be minutes from 0 to 60")
    return int(raw)


def add_read_routes(app: bottle.Bottle, services: Services) -> None:
    # The API process never writes these databases: bind the models to read-only connections
    # (peewee keeps one per thread; each request opens and closes its own).
    audit_db.database.initialize(readonly_db(services.settings.db_path))
    status_db.database.initialize(readonly_db(services.settings.status_db_path))

    @app.get("/events")
    def events_():
        if not authorized(services):  # events hold client IPs
            return unauthorized()
        try:
            return json_response(200, read_events(services, bottle.request.query))
        except BadRequest as exc:
            return error_response(exc.status, exc.message)
        except peewee.PeeweeException as exc:
            return error_response(503, f"events database not readable: {exc}")

    @app.get("/status")
    def status():
        try:
            return json_response(200, read_status(services, parse_history(bottle.request.query.get("history"))))
        except BadRequest as exc:
            return error_response(exc.status, exc.message)
        except peewee.PeeweeException as exc:
            return error_response(503, f"status database not readable: {exc}")

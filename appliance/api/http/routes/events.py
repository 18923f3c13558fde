"""GET /events (search, newest first, paged by cursor), /events/stats, /events/export.

Only reads: the consumer is the one writer of the audit database. Each request opens its own
read-only connection (peewee keeps one per thread), so a database recreated meanwhile is seen.
Every parameter is checked (api/http/queries.py); a bad or unknown one is a 400 that names it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator

import bottle
import peewee

from appliance.api.http.errors import HttpError
from appliance.api.http.jsonio import json_response
from appliance.api.http.queries import EXPORT_PARAMETERS, parse_search, stats_window
from appliance.api.http.services import Services
from appliance.core.database import ERRORS as DB_ERRORS
from appliance.core.database import exists, is_postgres, open_database
from appliance.core.database_url import DatabaseUrl, describe_error
from appliance.schema import audit_db, audit_read
from appliance.schema.audit_read import Search


def export_lines(search: Search) -> Iterator[bytes]:
    with audit_db.database.connection_context():
        for event in audit_read.iterate(dataclasses.replace(search, ascending=True)):
            yield audit_read.jsonl_line(event)


def _read(body: Callable[[], Any]) -> Any:
    """``body`` on a connection of the pool; once more on a fresh one when the connection it got
    was lost (a PostgreSQL that restarted leaves every idle connection of the pool dead)."""
    for attempt in (1, 2):
        try:
            with audit_db.database.connection_context():
                return body()
        except peewee.OperationalError:
            if attempt == 2 or not is_postgres(audit_db.database.obj):
                raise
            audit_db.database.obj.close_idle()


def readable(url: DatabaseUrl, body: Callable[[], Any]) -> Any:
    """``body``'s answer; None while there is no database yet; a 503 when it cannot be read."""
    if not exists(url):
        return None
    try:
        return _read(body)
    except DB_ERRORS as exc:
        raise HttpError(503, f"events database not readable: {describe_error(exc, url)}") from None


def add_event_routes(app: bottle.Bottle, services: Services) -> None:
    # The API never writes the audit database: the models are bound to read-only connections.
    url = services.settings.database_url
    audit_db.database.initialize(open_database(url, readonly=True, purpose="api"))

    @app.get("/events")
    def events_():
        search = parse_search(bottle.request.query)
        found = readable(url, lambda: audit_read.search(search))
        if found is None:
            return json_response(200, {"events": [], "count": 0, "limit": search.limit,
                                       "next": None, "note": "no events persisted yet"})
        rows, cursor = found
        return json_response(200, {"events": rows, "count": len(rows), "limit": search.limit,
                                   "next": cursor})

    @app.get("/events/stats")
    def stats():
        since, until = stats_window(bottle.request.query)
        found = readable(url, lambda: audit_read.stats(since, until))
        return json_response(200, found or audit_read.empty_stats(since, until))

    @app.get("/events/export")
    def export():
        search = parse_search(bottle.request.query, EXPORT_PARAMETERS)
        bottle.response.content_type = "application/x-ndjson"
        if not exists(url):
            return b""
        bottle.request.environ["sts.streamed"] = True  # the middleware passes it through
        return export_lines(search)

"""GET /events (search, newest first, paged by cursor), /events/stats, /events/export.

Only reads: the consumer is the one writer of the audit database. Each request opens its own
read-only connection (peewee keeps one per thread), so a database recreated meanwhile is seen.
Every parameter is checked; a bad or unknown one is a 400 that names it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

import bottle
import peewee

from appliance.api.http.auth import token_required
from appliance.api.http.errors import HttpError
from appliance.api.http.jsonio import json_response
from appliance.api.http.services import Services
from appliance.core.database import ERRORS as DB_ERRORS
from appliance.core.database import exists, is_postgres, open_database
from appliance.core.database_url import describe_error
from appliance.core.timefmt import iso
from appliance.schema import audit_db, audit_read, events
from appliance.schema.audit_read import Search

MAX_LIMIT, DEFAULT_LIMIT = 500, 50
ORDERS = ("occurred", "persisted")
STATS_WINDOW = timedelta(hours=1)  # /events/stats without since
METHOD_RE = re.compile(r"[A-Za-z]{1,16}")
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
TRACE_ID_RE = re.compile(r"[0-9a-f]{32}")
STATUS_RE = re.compile(r"([1-5])(\d\d|xx)")


def bad(name: str, expected: str) -> HttpError:
    return HttpError(400, f"{name} must be {expected}")


def parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise bad("limit", f"an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def parse_moment(name: str, raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise bad(name, "an ISO-8601 time, e.g. 2026-01-31T12:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc)
    except (OverflowError, ValueError):  # e.g. 9999-12-31T23:59:59-05:00 is past the range in UTC
        raise HttpError(400, f"{name} is out of range") from None


def parse_time(name: str, raw: str | None) -> str | None:
    """An ISO-8601 instant, normalised to how times are stored (so text order is time order)."""
    moment = parse_moment(name, raw)
    return None if moment is None else iso(moment)


def parse_type(raw: str | None) -> tuple[tuple[type, ...], str | None]:
    """(tables to read, custom event_type filter)."""
    if raw is None:
        return audit_read.TABLES[:4], None
    if raw in audit_db.EVENT_TYPES:
        return (audit_db.EVENT_TYPES[raw],), None
    if raw == "dead_letter":
        return (audit_db.DeadLetter,), None
    if events.is_event_type(raw):
        return (audit_db.CustomEvent,), raw
    raise bad("type", "http_request, http_response, error, custom, dead_letter or a custom "
                      "event type of [a-z0-9_.-]")


def parse_network(raw: str | None) -> audit_read.Network | None:
    if raw is None:
        return None
    try:
        return ipaddress.ip_network(raw.strip(), strict=False)
    except ValueError:
        raise bad("user_ip", "an IP address or a network like 10.0.0.0/8 or 2001:db8::/32") from None


def parse_status(raw: str | None) -> tuple[int, int] | None:
    if raw is None:
        return None
    found = STATUS_RE.fullmatch(raw)
    if not found:
        raise bad("status", "a code from 100 to 599 (404) or a class (5xx)")
    if found.group(2) == "xx":
        base = int(found.group(1)) * 100
        return base, base + 99
    return int(raw), int(raw)


def parse_text(name: str, raw: str | None, pattern: re.Pattern | None = None,
               limit: int = 255, must_start: str = "") -> str | None:
    if raw is None:
        return None
    if not raw or len(raw) > limit or not raw.startswith(must_start) or (
            pattern and not pattern.fullmatch(raw)):
        what = f"text of 1-{limit} characters" + (f" starting with {must_start}" if must_start else "")
        raise bad(name, f"{what}{' of the form ' + pattern.pattern if pattern else ''}")
    return raw


def parse_order(raw: str | None) -> str:
    if raw is None:
        return "occurred"
    if raw not in ORDERS:
        raise bad("order", "occurred or persisted")
    return raw


SEARCH_PARAMETERS = {"type", "limit", "order", "before", "after", "user_ip", "path", "route",
                     "method", "status", "request_id", "trace_id", "cursor"}


def parse_search(query: bottle.FormsDict, allowed: set[str] = SEARCH_PARAMETERS) -> Search:
    unknown = sorted(set(query) - allowed)
    if unknown:
        raise HttpError(400, f"unknown parameter(s): {', '.join(unknown)}")
    tables, custom_type = parse_type(query.get("type"))
    search = Search(
        tables=tables, custom_type=custom_type, user_net=parse_network(query.get("user_ip")),
        path_prefix=parse_text("path", query.get("path"), limit=events.TEXT_LIMITS["path"],
                               must_start="/"),
        route=parse_text("route", query.get("route")),
        method=parse_text("method", query.get("method"), METHOD_RE, 16),
        status=parse_status(query.get("status")),
        request_id=parse_text("request_id", query.get("request_id"), REQUEST_ID_RE, 128),
        trace_id=parse_text("trace_id", query.get("trace_id"), TRACE_ID_RE, 32),
        after=parse_time("after", query.get("after")), before=parse_time("before", query.get("before")),
        order=parse_order(query.get("order")), limit=parse_limit(query.get("limit")))
    cursor = query.get("cursor")
    if cursor is not None:
        try:
            search = dataclasses.replace(search, cursor=audit_read.decode_cursor(search, cursor))
        except audit_read.BadCursor as exc:
            raise HttpError(400, str(exc)) from None
    return search


def stats_window(query: bottle.FormsDict) -> tuple[str, str]:
    unknown = sorted(set(query) - {"since", "until"})
    if unknown:
        raise HttpError(400, f"unknown parameter(s): {', '.join(unknown)}")
    until = parse_moment("until", query.get("until")) or datetime.now(timezone.utc)
    since = parse_moment("since", query.get("since"))
    if since is None:
        try:
            since = until - STATS_WINDOW
        except OverflowError:  # an until in the first hour of year 1
            since = datetime.min.replace(tzinfo=timezone.utc)
    return iso(since), iso(until)  # since at or after until: an empty window, zero counts


def export_lines(search: Search) -> Iterator[bytes]:
    with audit_db.database.connection_context():
        for event in audit_read.iterate(dataclasses.replace(search, ascending=True)):
            yield (json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


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


def add_event_routes(app: bottle.Bottle, services: Services) -> None:
    # The API never writes the audit database: the models are bound to read-only connections.
    url = services.settings.database_url
    audit_db.database.initialize(open_database(url, readonly=True, purpose="api"))
    protected = token_required(services.settings)  # events hold client IPs

    def readable(body: Callable[[], Any]) -> Any:
        if not exists(url):
            return None
        try:
            return _read(body)
        except DB_ERRORS as exc:
            raise HttpError(503, f"events database not readable: {describe_error(exc, url)}") from None

    @app.get("/events")
    @protected
    def events_():
        search = parse_search(bottle.request.query)
        found = readable(lambda: audit_read.search(search))
        if found is None:
            return json_response(200, {"events": [], "count": 0, "limit": search.limit,
                                       "next": None, "note": "no events persisted yet"})
        rows, cursor = found
        return json_response(200, {"events": rows, "count": len(rows), "limit": search.limit,
                                   "next": cursor})

    @app.get("/events/stats")
    @protected
    def stats():
        since, until = stats_window(bottle.request.query)
        found = readable(lambda: audit_read.stats(since, until))
        return json_response(200, found or audit_read.empty_stats(since, until))

    @app.get("/events/export")
    @protected
    def export():
        search = parse_search(bottle.request.query, SEARCH_PARAMETERS - {"limit", "cursor", "order"})
        bottle.response.content_type = "application/x-ndjson"
        if not exists(url):
            return b""
        bottle.request.environ["sts.streamed"] = True  # the middleware passes it through
        return export_lines(search)

"""Query parameters of the reading routes (/events, /events/stats, /events/export, /status),
checked against the vocabulary (schema/vocabulary.py): a bad or unknown one is a 400 that
names it and says what is expected."""

from __future__ import annotations

import dataclasses
import ipaddress
from datetime import datetime, timedelta, timezone
from typing import Mapping

from appliance.api.http.errors import HttpError
from appliance.core.timefmt import iso
from appliance.schema import audit_read, vocabulary
from appliance.schema.audit_read import Search
from appliance.schema.vocabulary import Word

MAX_LIMIT, DEFAULT_LIMIT = 500, 50
ORDERS = ("occurred", "persisted")
STATS_WINDOW = timedelta(hours=1)  # /events/stats without since
SEARCH_PARAMETERS = frozenset({"type", "limit", "order", "before", "after", "user_ip", "path",
                               "route", "method", "status", "request_id", "trace_id", "injected",
                               "cursor"})
EXPORT_PARAMETERS = SEARCH_PARAMETERS - {"limit", "cursor", "order"}
ROUTE_LIMIT = 255  # a route template's longest text


def bad(name: str, expected: str) -> HttpError:
    return HttpError(400, f"{name} must be {expected}")


def refuse_unknown(query: Mapping[str, str], allowed: frozenset[str] | set[str]) -> None:
    unknown = sorted(set(query) - set(allowed))
    if unknown:
        raise HttpError(400, f"unknown parameter(s): {', '.join(unknown)}")


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
        return vocabulary.parse_instant(raw)
    except vocabulary.InstantOutOfRange:  # e.g. 9999-12-31T23:59:59-05:00 is past it in UTC
        raise HttpError(400, f"{name} is out of range") from None
    except ValueError as exc:
        raise bad(name, str(exc)) from None


def parse_time(name: str, raw: str | None) -> str | None:
    """An ISO-8601 instant, normalised to how times are stored (so text order is time order)."""
    moment = parse_moment(name, raw)
    return None if moment is None else iso(moment)


def parse_type(raw: str | None) -> tuple[tuple[type, ...], str | None]:
    """(tables to read, custom event_type filter)."""
    try:
        return audit_read.tables_for(raw)
    except ValueError as exc:
        raise bad("type", str(exc)) from None


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
    found = vocabulary.STATUS_FILTER.fullmatch(raw)
    if not found:
        raise bad("status", "a code from 100 to 599 (404) or a class (5xx)")
    if found.group(2) == "xx":
        base = int(found.group(1)) * 100
        return base, base + 99
    return int(raw), int(raw)


def parse_text(name: str, raw: str | None, limit: int, must_start: str = "") -> str | None:
    if raw is None:
        return None
    if not raw or len(raw) > limit or not raw.startswith(must_start):
        what = f"text of 1-{limit} characters" + (f" starting with {must_start}" if must_start else "")
        raise bad(name, what)
    return raw


def parse_word(name: str, raw: str | None, word: Word) -> str | None:
    if raw is None:
        return None
    if not word.matches(raw):
        raise bad(name, word.expected)
    return raw


def parse_flag(name: str, raw: str | None) -> bool | None:
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise bad(name, "true or false")
    return raw == "true"


def parse_order(raw: str | None) -> str:
    if raw is None:
        return "occurred"
    if raw not in ORDERS:
        raise bad("order", "occurred or persisted")
    return raw


def parse_search(query: Mapping[str, str], allowed: frozenset[str] = SEARCH_PARAMETERS) -> Search:
    refuse_unknown(query, allowed)
    tables, custom_type = parse_type(query.get("type"))
    search = Search(
        tables=tables, custom_type=custom_type, user_net=parse_network(query.get("user_ip")),
        path_prefix=parse_text("path", query.get("path"), vocabulary.TEXT_LIMITS["path"], "/"),
        route=parse_text("route", query.get("route"), ROUTE_LIMIT),
        method=parse_word("method", query.get("method"), vocabulary.METHOD),
        status=parse_status(query.get("status")),
        request_id=parse_word("request_id", query.get("request_id"), vocabulary.REQUEST_ID),
        trace_id=parse_word("trace_id", query.get("trace_id"), vocabulary.TRACE_ID),
        injected=parse_flag("injected", query.get("injected")),
        after=parse_time("after", query.get("after")), before=parse_time("before", query.get("before")),
        order=parse_order(query.get("order")), limit=parse_limit(query.get("limit")))
    cursor = query.get("cursor")
    if cursor is not None:
        try:
            search = dataclasses.replace(search, cursor=audit_read.decode_cursor(search, cursor))
        except audit_read.BadCursor as exc:
            raise HttpError(400, str(exc)) from None
    return search


def stats_window(query: Mapping[str, str]) -> tuple[str, str]:
    refuse_unknown(query, {"since", "until"})
    until = parse_moment("until", query.get("until")) or datetime.now(timezone.utc)
    since = parse_moment("since", query.get("since"))
    if since is None:
        try:
            since = until - STATS_WINDOW
        except OverflowError:  # an until in the first hour of year 1
            since = datetime.min.replace(tzinfo=timezone.utc)
    return iso(since), iso(until)  # since at or after until: an empty window, zero counts

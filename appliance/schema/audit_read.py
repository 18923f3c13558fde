"""Reading the audit trail: search with filters and keyset paging, statistics, export.

Used by the API (/events, /events/stats, /events/export) and by `events export`. Every filter
is an index range of the tables it applies to (audit_db's (column, occurred_at) indexes);
tables a filter does not apply to are left out (a status filter reads no custom events).

Paging is by key, not by offset: the rows of all tables are ordered by (time, table, id), and a
cursor is the key of the last row returned. The next page starts strictly after it, so
following ``next`` never repeats a row and never skips one of the rows that were there; rows
that arrive meanwhile appear where their time puts them (with order=persisted: always before
the first page, so a reader following new rows uses that order).
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import ipaddress
import json
from dataclasses import dataclass, replace
from typing import Any, Iterator

import peewee

from appliance.core import jsontext
from appliance.schema import audit_db, vocabulary

TABLES = (audit_db.HttpRequest, audit_db.HttpResponse, audit_db.ErrorEvent, audit_db.CustomEvent,
          audit_db.DeadLetter)  # the rank of each in the ordering key
TYPE_NAMES = {model: name for name, model in audit_db.EVENT_TYPES.items()} | {
    audit_db.DeadLetter: vocabulary.DEAD_LETTER}
IP_TABLES = (audit_db.HttpRequest, audit_db.HttpResponse)
HTTP_TABLES = (*IP_TABLES, audit_db.ErrorEvent)
STATUS_TABLES = (audit_db.HttpResponse, audit_db.ErrorEvent)
EVENT_TABLES = audit_db.EVENT_MODELS
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def tables_for(event_type: str | None) -> tuple[tuple[type, ...], str | None]:
    """The tables a ``type`` filter reads, and the custom event type to match (None: any);
    ValueError (saying what is expected) for a type that is none of them."""
    if event_type is None:
        return TABLES[:4], None
    if event_type in audit_db.EVENT_TYPES:
        return (audit_db.EVENT_TYPES[event_type],), None
    if event_type == vocabulary.DEAD_LETTER:
        return (audit_db.DeadLetter,), None
    if vocabulary.EVENT_TYPE.matches(event_type):
        return (audit_db.CustomEvent,), event_type
    raise ValueError(vocabulary.TYPE_FILTER_EXPECTED)


def jsonl_line(event: dict[str, Any]) -> bytes:
    """One event of an export: its JSON object on a line of its own."""
    return jsontext.dumps(event) + b"\n"


class BadCursor(ValueError):
    """The cursor was not made by this appliance for these filters."""


@dataclass(frozen=True)
class Search:
    tables: tuple[type, ...] = TABLES[:4]  # every event type; dead letters only when asked
    custom_type: str | None = None
    user_net: Network | None = None
    path_prefix: str | None = None
    route: str | None = None
    method: str | None = None
    status: tuple[int, int] | None = None  # (lowest, highest): a code, or a class like 5xx
    request_id: str | None = None
    trace_id: str | None = None
    injected: bool | None = None  # True: only exchanges with an injected fault; False: none
    after: str | None = None  # exclusive, in the stored format
    before: str | None = None  # exclusive
    since: str | None = None  # inclusive (export's window: [since, before))
    order: str = "occurred"  # or "persisted"
    limit: int = 50
    cursor: tuple[str, int, int] | None = None  # (time, table rank, id) of the last row seen
    ascending: bool = False

    def selected(self) -> list[type]:
        """The tables every given filter applies to."""
        tables = list(self.tables)
        for given, applies in ((self.user_net, IP_TABLES), (self.status, STATUS_TABLES),
                               (self.path_prefix or self.route or self.method, HTTP_TABLES),
                               (self.request_id or self.trace_id, EVENT_TABLES),
                               (self.injected is not None, (audit_db.HttpResponse,))):
            if given:
                tables = [t for t in tables if t in applies]
        return tables

    def digest(self) -> str:
        """Identifies the filters (not the position): a cursor only continues its own search."""
        plain = replace(self, limit=0, cursor=None)
        return hashlib.sha256(repr(plain).encode()).hexdigest()[:12]


def time_field(model, order: str) -> peewee.Field:
    if model is audit_db.DeadLetter:
        return model.received_at
    return model.persisted_at if order == "persisted" else model.occurred_at


RECENT_ROWS = 2000  # rows read newest first before a range filter's own index is used
RECENT_MAX = 20_000  # the most read newest first, when the first RECENT_ROWS held some matches


def filtered(model, search: Search) -> peewee.ModelSelect:
    """The rows of ``model`` that pass every filter."""
    query = model.select()
    for condition in _conditions(model, search):
        query = query.where(condition)
    return query


def _conditions(model, search: Search, with_window: bool = True) -> list[peewee.Expression]:
    conditions = []
    if search.user_net is not None:
        low, high = audit_db.network_range(search.user_net)
        key = model.user_ip_key
        conditions.append(key == low if low == high else key.between(low, high))
    if search.path_prefix:
        conditions += [model.path >= search.path_prefix, model.path < prefix_end(search.path_prefix)]
    if search.status is not None:
        low, high = search.status
        conditions.append(model.status == low if low == high else model.status.between(low, high))
    for name, wanted in (("route", search.route), ("method", search.method),
                         ("request_id", search.request_id), ("trace_id", search.trace_id)):
        if wanted is not None:
            conditions.append(getattr(model, name) == wanted)
    if search.injected is not None:
        kind = model.injected_kind
        conditions.append(kind.is_null(False) if search.injected else kind.is_null())
    if search.custom_type is not None and model is audit_db.CustomEvent:
        conditions.append(model.event_type == search.custom_type)
    return conditions + (_window(model, search) if with_window else [])


def _window(model, search: Search, hidden: bool = False) -> list[peewee.Expression]:
    at = time_field(model, search.order)
    if hidden:  # "|| ''" hides the column from the planner: the filter's own index is used
        at = at.concat("")
    conditions = []
    if search.after:
        conditions.append(at > search.after)
    if search.since:
        conditions.append(at >= search.since)
    if search.before:
        conditions.append(at < search.before)
    return conditions


def has_range(search: Search) -> bool:
    """A network, a path prefix or a status class: filters whose index gives its matches in
    key order, all of them to be sorted by time before the page's first row is known."""
    return ((search.user_net is not None and search.user_net.num_addresses > 1)
            or bool(search.path_prefix)
            or (search.status is not None and search.status[0] != search.status[1]))


def prefix_end(prefix: str) -> str:
    """The first text after every text that starts with ``prefix`` (an index range's end)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _after_cursor(model, rank: int, search: Search) -> peewee.Expression | None:
    """Rows strictly past the cursor in the page order (time, table rank, id)."""
    if search.cursor is None:
        return None
    at, cursor_rank, row_id = search.cursor
    field = time_field(model, search.order)
    past = (lambda a, b: a > b) if search.ascending else (lambda a, b: a < b)
    if rank == cursor_rank:
        return past(field, at) | ((field == at) & past(model.id, row_id))
    return past(field, at) | (field == at) if past(rank, cursor_rank) else past(field, at)


def _page_of(model, search: Search, rows: int) -> list[tuple[tuple, Any]]:
    """The next ``rows`` rows of ``model`` in page order.

    A range filter's index gives its matches in key order, all of them to be sorted by time;
    the time index gives rows in order, to be filtered. Which is cheaper depends on how many
    rows match, so the newest rows are tried first: RECENT_ROWS of them, then (when they held
    some matches but not a page) as many as the matches so far say a page needs, up to
    RECENT_MAX; only a filter that matches fewer is read through its own index. Measured on
    10,000,000 events over a 24 h window, see bench/README.md."""
    if not has_range(search):
        return _ordered(model, search, filtered(model, search), rows)
    window = RECENT_ROWS
    while True:
        recent = _ordered(model, search, _recent_rows(model, search, window), rows)
        if len(recent) == rows:
            return recent
        needed = 2 * rows * window // max(len(recent), 1)
        if not recent or window >= RECENT_MAX or needed > RECENT_MAX:
            break
        window = needed
    query = model.select()
    for condition in (_conditions(model, search, with_window=False)
                      + _window(model, search, hidden=True)):
        query = query.where(condition)
    return _ordered(model, search, query, rows)


def _recent_rows(model, search: Search, window: int) -> peewee.ModelSelect:
    """The filters applied to the next ``window`` rows in time order, read by the time index."""
    newest = model.select(model.id)
    for condition in _window(model, search) + _cursor_condition(model, search):
        newest = newest.where(condition)
    newest = _order(model, search, newest).limit(window)
    query = model.select().where(model.id.in_(newest))
    for condition in _conditions(model, search, with_window=False):
        query = query.where(condition)
    return query


def _cursor_condition(model, search: Search) -> list[peewee.Expression]:
    condition = _after_cursor(model, TABLES.index(model), search)
    return [] if condition is None else [condition]


def _order(model, search: Search, query: peewee.ModelSelect) -> peewee.ModelSelect:
    at = time_field(model, search.order)
    direction = (lambda f: f.asc()) if search.ascending else (lambda f: f.desc())
    return query.order_by(direction(at), direction(model.id))


def _ordered(model, search: Search, query: peewee.ModelSelect, rows: int) -> list[tuple[tuple, Any]]:
    for condition in _cursor_condition(model, search):
        query = query.where(condition)
    at, rank = time_field(model, search.order), TABLES.index(model)
    return [((getattr(row, at.name), rank, row.id), row) for row in _order(model, search, query).limit(rows)]


def search(search: Search) -> tuple[list[dict[str, Any]], str | None]:
    """One page of events and the cursor of the next one (None: this was the last)."""
    pages = [_page_of(model, search, search.limit + 1) for model in search.selected()]
    merged = heapq.merge(*pages, key=lambda item: item[0], reverse=not search.ascending)
    found = [item for _, item in zip(range(search.limit + 1), merged)]
    rows = found[:search.limit]
    more = len(found) > search.limit
    cursor = encode_cursor(search, rows[-1][0]) if more and rows else None
    return [as_event(type(row), row) for _, row in rows], cursor


def iterate(search: Search, chunk: int = 1000) -> Iterator[dict[str, Any]]:
    """Every matching event, in constant memory (a page of ``chunk`` at a time)."""
    search = replace(search, limit=chunk)
    while True:
        pages = [_page_of(model, search, chunk) for model in search.selected()]
        merged = heapq.merge(*pages, key=lambda item: item[0], reverse=not search.ascending)
        if all(len(page) < chunk for page in pages):  # every table's rest is here
            for _, row in merged:
                yield as_event(type(row), row)
            return
        # Some table has more: its page is full, so the first ``chunk`` rows of all are final.
        rows = [item for _, item in zip(range(chunk), merged)]
        for _, row in rows:
            yield as_event(type(row), row)
        search = replace(search, cursor=rows[-1][0])


def encode_cursor(search: Search, key: tuple) -> str:
    text = jsontext.dumps([1, search.digest(), *key])
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


def decode_cursor(search: Search, cursor: str) -> tuple[str, int, int]:
    try:
        version, digest, at, rank, row_id = json.loads(
            base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError, UnicodeDecodeError):
        raise BadCursor("cursor is not one this appliance gave out") from None
    valid = (version == 1 and isinstance(at, str) and isinstance(rank, int) and isinstance(row_id, int)
             and 0 <= rank < len(TABLES))
    if not valid:
        raise BadCursor("cursor is not one this appliance gave out")
    if digest != search.digest():
        raise BadCursor("cursor belongs to other filters: pass the same ones as for the first page")
    return at, rank, row_id


def as_event(model, row: peewee.Model) -> dict[str, Any]:
    data = {name: getattr(row, name) for name in model._meta.fields
            if name not in ("id", "user_ip_key")}
    if model is audit_db.DeadLetter:
        data["raw"] = bytes(data["raw"])[:2048].decode("utf-8", "replace")
        return {"event_type": vocabulary.DEAD_LETTER, "occurred_at": data["received_at"], **data}
    if model is audit_db.CustomEvent:
        data["payload"] = json.loads(data["payload"])
        return data
    if model is audit_db.HttpResponse:
        kind, value = data.pop("injected_kind"), data.pop("injected_value")
        if kind is not None:
            data["injected"] = {"kind": kind, "value": value}
    return {"event_type": TYPE_NAMES[model], **data}


# --- statistics ----------------------------------------------------------------------------------

TOP = 10  # entries in each top list


def stats(since: str, until: str) -> dict[str, Any]:
    """Counts and latency over [since, until), all computed by the database."""
    responses = audit_db.HttpResponse
    window = (responses.occurred_at >= since) & (responses.occurred_at < until)
    return {
        "since": since, "until": until, **counts_by_type(since, until),
        "by_status_class": by_status_class(window),
        "top_clients": top(responses.user_ip, window, "user_ip"),
        "top_routes": top(responses.route, window, "route"),
        "top_proxy_chains": top(responses.proxy_chain, window & (responses.proxy_chain != ""),
                                "proxy_chain"),
        "duration_ms": percentiles(window, (50, 95, 99)),
    }


def empty_stats(since: str, until: str) -> dict[str, Any]:
    """What stats() answers for a database that does not exist yet."""
    return {"since": since, "until": until, "total": 0, "by_type": {}, "by_status_class": {},
            "top_clients": [], "top_routes": [], "top_proxy_chains": [],
            "duration_ms": {"p50": None, "p95": None, "p99": None}}


def counts_by_type(since: str, until: str) -> dict[str, Any]:
    by_type: dict[str, int] = {}
    for model in (audit_db.HttpRequest, audit_db.HttpResponse, audit_db.ErrorEvent):
        by_type[TYPE_NAMES[model]] = (model.select().where(
            (model.occurred_at >= since) & (model.occurred_at < until)).count())
    custom = audit_db.CustomEvent
    for event_type, count in (custom.select(custom.event_type, peewee.fn.COUNT(custom.id))
                              .where((custom.occurred_at >= since) & (custom.occurred_at < until))
                              .group_by(custom.event_type).tuples()):
        by_type[event_type] = count
    letters = audit_db.DeadLetter
    by_type[vocabulary.DEAD_LETTER] = letters.select().where(
        (letters.received_at >= since) & (letters.received_at < until)).count()
    return {"total": sum(by_type.values()), "by_type": by_type}


def by_status_class(window) -> dict[str, int]:
    responses = audit_db.HttpResponse
    status_class = (responses.status / 100).cast("INTEGER")
    # Grouped by the alias: PostgreSQL binds the 100 as a parameter, and "status / $1" in the
    # SELECT list is not the same expression as "status / $2" in a GROUP BY.
    rows = (responses.select(status_class.alias("c"), peewee.fn.COUNT(responses.id))
            .where(window).group_by(peewee.SQL("c")).tuples())
    return {f"{c}xx": n for c, n in rows}


def top(column: peewee.Field, window, name: str) -> list[dict[str, Any]]:
    count = peewee.fn.COUNT(column.model.id)
    rows = (column.model.select(column, count.alias("n")).where(window).group_by(column)
            .order_by(count.desc(), column).limit(TOP).tuples())
    return [{name: value, "count": n} for value, n in rows]


def percentiles(window, wanted: tuple[int, ...]) -> dict[str, float | None]:
    """Exact percentiles (nearest rank) of duration_ms, without sorting the whole window: a
    histogram of whole milliseconds finds the millisecond of each rank, then only the rows of
    that millisecond are sorted."""
    responses = audit_db.HttpResponse
    whole = responses.duration_ms.cast("INTEGER")
    histogram = list(responses.select(whole, peewee.fn.COUNT(responses.id)).where(window)
                     .group_by(whole).order_by(whole).tuples())
    total = sum(n for _, n in histogram)
    result: dict[str, float | None] = {}
    for p in wanted:
        if not total:
            result[f"p{p}"] = None
            continue
        rank = max(1, -(-p * total // 100))  # nearest rank: ceil(p/100 * n)
        below = 0
        for millisecond, n in histogram:
            if below + n >= rank:
                break
            below += n
        value = (responses.select(responses.duration_ms).where(window & (whole == millisecond))
                 .order_by(responses.duration_ms).offset(rank - below - 1).limit(1).scalar())
        result[f"p{p}"] = value
    return result



# --- dead letters ------------------------------------------------------------------------------

PREVIEW = 200  # characters of a dead letter's bytes shown in a list
REASON_GROUPS = 20  # reasons counted in a list's by_reason


@dataclass(frozen=True)
class LetterSearch:
    reason: str | None = None  # a part of the error text
    after: str | None = None  # received after (exclusive, stored format)
    before: str | None = None
    below_id: int | None = None  # the cursor: ids below it (newest first)
    limit: int = 50
    ids: tuple[int, ...] | None = None


def letters_matching(search: LetterSearch) -> peewee.ModelSelect:
    letters = audit_db.DeadLetter
    query = letters.select()
    if search.reason:
        query = query.where(letters.error.contains(search.reason))
    if search.after:
        query = query.where(letters.received_at > search.after)
    if search.before:
        query = query.where(letters.received_at < search.before)
    if search.below_id is not None:
        query = query.where(letters.id < search.below_id)
    if search.ids is not None:
        query = query.where(letters.id.in_(list(search.ids)))
    return query.order_by(letters.id.desc())


def letter_summary(row) -> dict[str, Any]:
    raw = bytes(row.raw)
    return {"id": row.id, "reason": row.error, "received_at": row.received_at,
            "topic": row.topic, "partition": row.partition, "offset": row.offset,
            "bytes": len(raw), "preview": raw[:PREVIEW * 4].decode("utf-8", "replace")[:PREVIEW],
            "replayed_at": row.replayed_at, "replay_outcome": row.replay_outcome}


def dead_letters(search: LetterSearch) -> tuple[list[dict[str, Any]], int | None, list[dict[str, Any]]]:
    """A page of dead letters newest first, the id to continue below (None: the last page),
    and how many there are of each reason (of the same filters, the commonest first)."""
    rows = list(letters_matching(search).limit(search.limit + 1))
    page = rows[:search.limit]
    below = page[-1].id if len(rows) > search.limit else None
    letters = audit_db.DeadLetter
    grouped = letters_matching(replace(search, below_id=None)).order_by()
    count = peewee.fn.COUNT(letters.id)
    reasons = (grouped.select(letters.error, count.alias("n")).group_by(letters.error)
               .order_by(count.desc(), letters.error).limit(REASON_GROUPS).tuples())
    return ([letter_summary(row) for row in page], below,
            [{"reason": reason, "count": n} for reason, n in reasons])


def dead_letter(letter_id: int) -> dict[str, Any] | None:
    """One dead letter with its bytes: as base64, and as text when they are UTF-8."""
    row = audit_db.DeadLetter.get_or_none(audit_db.DeadLetter.id == letter_id)
    if row is None:
        return None
    raw = bytes(row.raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {**letter_summary(row), "dedup_key": row.dedup_key,
            "raw_base64": base64.b64encode(raw).decode("ascii"), "raw_text": text}


def replayable(search: LetterSearch) -> list[tuple[int, str, bytes]]:
    """(id, dedup_key, bytes) of the dead letters a replay sends, oldest first."""
    rows = letters_matching(search).limit(search.limit)
    return sorted((row.id, row.dedup_key, bytes(row.raw)) for row in rows)

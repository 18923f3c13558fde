"""The audit database (DATABASE_URL, by default the SQLite file DB_PATH): its tables as peewee
models, and the schema's version.

Written only by the consumer (pipeline/consumer/store.py); the API reads it for /events, the
agent for its database probe. Every event table has ``event_id`` (unique: redelivery never adds
a row), ``request_id``, ``occurred_at`` and ``trace_id`` columns, an index on ``occurred_at`` for
newest-first reads, and an index for every filter of /events (audit_read.py): each as
(column, occurred_at), so a filtered page is read in order from the index.

Version 2 added ``user_ip_key`` (the address as 32 hex digits of its IPv6 form, so a CIDR is a
range of the index; NULL until the consumer fills it in for rows of version 1, "" for a
user_ip that is not an address), the filter indexes, and incremental auto-vacuum.
Version 3 added the statistics index of http_responses: (occurred_at, then every column
/events/stats groups by), so the statistics of a window read that index alone instead of the
table's rows (measured on 10,000,000 events, 24 h: 3.4 s -> 1.5 s); keyed by time, it grows at
its end like the time index.
Version 4 added ``injected_kind`` and ``injected_value`` to http_responses (a fault injected on
purpose: api/http/faults.py; NULL for every other exchange), indexed with occurred_at for
/events?injected=, and ``replayed_at``, ``replay_outcome`` to dead_letters (`dead-letters replay`).
"""

from __future__ import annotations

import functools
import ipaddress

import peewee

from appliance.schema import vocabulary

SCHEMA_VERSION = 4
database = peewee.DatabaseProxy()


@functools.lru_cache(maxsize=4096)  # the consumer asks for every row, mostly the same clients
def ip_key(text: str) -> str:
    """An address as 32 hex digits of its IPv6 form (IPv4 as ::ffff:a.b.c.d): text order is
    address order, so a network is one range. "" when ``text`` is not an address."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return ""
    if address.version == 4:
        address = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + address.packed)
    return address.packed.hex()


def network_range(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[str, str]:
    """The first and last ``ip_key`` of a network."""
    return ip_key(str(network.network_address)), ip_key(str(network.broadcast_address))


class BaseModel(peewee.Model):
    class Meta:
        database = database


class EventModel(BaseModel):
    id = peewee.BigAutoField()  # PostgreSQL: BIGSERIAL (N appliances pass 2**31 rows); SQLite: rowid
    event_id = peewee.CharField(max_length=64, unique=True)
    request_id = peewee.CharField(max_length=128, index=True)
    occurred_at = peewee.CharField(max_length=32, index=True)  # ISO-8601 UTC, sorts as text
    trace_id = peewee.CharField(max_length=32, null=True, index=True)
    hostname = peewee.CharField(max_length=255, default="")
    persisted_at = peewee.CharField(max_length=32, index=True)  # for /events?order=persisted


HTTP_INDEXES = ((("user_ip_key", "occurred_at"), False), (("route", "occurred_at"), False),
                (("method", "occurred_at"), False), (("path", "occurred_at"), False))


class HttpRequest(EventModel):
    method = peewee.CharField(max_length=16)
    route = peewee.CharField(max_length=255)
    path = peewee.TextField()
    query = peewee.TextField(default="")
    user_ip = peewee.CharField(max_length=64)
    user_ip_key = peewee.CharField(max_length=32, null=True)
    proxy_chain = peewee.TextField(default="")
    user_agent = peewee.TextField(default="")
    bytes = peewee.BigIntegerField(default=0)

    class Meta:
        table_name = "http_requests"
        indexes = HTTP_INDEXES


class HttpResponse(HttpRequest):
    status = peewee.IntegerField()
    duration_ms = peewee.DoubleField()  # PostgreSQL's FLOAT is 4 bytes; SQLite's REAL is 8
    injected_kind = peewee.CharField(max_length=16, null=True)  # version 4: error or delay
    injected_value = peewee.IntegerField(null=True)  # the status, or the milliseconds

    class Meta:
        table_name = "http_responses"
        indexes = (*HTTP_INDEXES, (("status", "occurred_at"), False),
                   (("injected_kind", "occurred_at"), False))


HttpResponse.add_index(peewee.ModelIndex(HttpResponse, (
    HttpResponse.occurred_at, HttpResponse.status, HttpResponse.duration_ms, HttpResponse.route,
    HttpResponse.user_ip, HttpResponse.proxy_chain), name="httpresponse_stats"))  # version 3


class ErrorEvent(EventModel):
    method = peewee.CharField(max_length=16)
    route = peewee.CharField(max_length=255)
    path = peewee.TextField()
    status = peewee.IntegerField()
    error = peewee.CharField(max_length=255)
    message = peewee.TextField(default="")

    class Meta:
        table_name = "errors"
        indexes = ((("route", "occurred_at"), False), (("method", "occurred_at"), False),
                   (("path", "occurred_at"), False), (("status", "occurred_at"), False))


class CustomEvent(EventModel):
    event_type = peewee.CharField(max_length=64)
    payload = peewee.TextField()  # the caller's JSON object, as JSON text

    class Meta:
        table_name = "custom_events"
        indexes = ((("event_type", "occurred_at"), False),)


class DeadLetter(BaseModel):
    # topic/partition/offset plus a digest of the bytes: a redelivered bad message is one row,
    # while a broker that restarted and reused the offset for other bytes still gets a new one.
    id = peewee.BigAutoField()
    dedup_key = peewee.CharField(max_length=400, unique=True)
    topic = peewee.CharField(max_length=249)
    partition = peewee.IntegerField()
    offset = peewee.BigIntegerField()
    raw = peewee.BlobField()
    error = peewee.TextField()
    received_at = peewee.CharField(max_length=32, index=True)
    # Version 4: when a replayed copy last came back (`dead-letters replay`), and how it went:
    # "persisted" (the cause is gone: its row is written) or "failed" (error is the new reason).
    replayed_at = peewee.CharField(max_length=32, null=True)
    replay_outcome = peewee.CharField(max_length=16, null=True)

    class Meta:
        table_name = "dead_letters"


class SchemaMeta(BaseModel):
    """One row per fact about the database itself: its schema version, above all."""

    name = peewee.CharField(max_length=64, primary_key=True)
    value = peewee.TextField()

    class Meta:
        table_name = "schema_meta"


EVENT_MODELS = (HttpRequest, HttpResponse, ErrorEvent, CustomEvent)
ALL_MODELS = (*EVENT_MODELS, DeadLetter)
TIME_FIELD = {model: model.occurred_at for model in EVENT_MODELS} | {DeadLetter: DeadLetter.received_at}


EVENT_TYPES = {vocabulary.HTTP_REQUEST: HttpRequest, vocabulary.HTTP_RESPONSE: HttpResponse,
               vocabulary.ERROR: ErrorEvent, vocabulary.CUSTOM: CustomEvent}  # /events?type=, per table


# Columns added after a table's first version: (model, column, SQL type), for the migration.
ADDED_COLUMNS = ((HttpRequest, "user_ip_key", "VARCHAR(32)"), (HttpResponse, "user_ip_key", "VARCHAR(32)"),
                 (HttpResponse, "injected_kind", "VARCHAR(16)"),
                 (HttpResponse, "injected_value", "INTEGER"),
                 (DeadLetter, "replayed_at", "VARCHAR(32)"),
                 (DeadLetter, "replay_outcome", "VARCHAR(16)"))


def table_name(model: type[BaseModel]) -> str:
    return model._meta.table_name


def row_counts(db: peewee.Database) -> dict[str, int]:
    """Rows ever written per table, by MAX(id): O(1), and it only grows (retention deletes the
    oldest rows, which a rate of rows written must not see). On PostgreSQL, ids issued: an
    insert that skips a duplicate still draws one from the sequence."""
    return {table_name(model): db.execute_sql(
        f'SELECT COALESCE(MAX(id), 0) FROM "{table_name(model)}"').fetchone()[0]
        for model in ALL_MODELS}


ESTIMATE_ABOVE = 100_000  # PostgreSQL: rows past which the planner's estimate is shown


def rows_kept(db: peewee.Database) -> dict[str, int]:
    """Rows in each table now. SQLite: MAX(id) - MIN(id) + 1, O(1) and exact while deletions
    take the oldest (retention does), since ids grow with time and a skipped duplicate draws
    none. PostgreSQL: its sequences have gaps, so an exact COUNT while it is cheap, then the
    planner's estimate (pg_class.reltuples), never a scan of millions of rows per probe."""
    counts = {}
    for model in ALL_MODELS:
        table = table_name(model)
        if isinstance(db, peewee.PostgresqlDatabase):
            estimate = db.execute_sql("SELECT reltuples FROM pg_class WHERE oid = %s::regclass",
                                      (f'"{table}"',)).fetchone()[0]
            counts[table] = (int(estimate) if estimate > ESTIMATE_ABOVE else
                             db.execute_sql(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])
            continue
        low, high = db.execute_sql(f'SELECT MIN(id), MAX(id) FROM "{table}"').fetchone()
        counts[table] = high - low + 1 if high is not None else 0
    return counts


def newest_event_at(db: peewee.Database) -> str | None:
    return db.execute_sql(f'SELECT MAX(occurred_at) FROM "{table_name(HttpResponse)}"').fetchone()[0]

"""The audit database: peewee models over SQLite, written only by the consumer.

Every event table has ``event_id`` (unique: redelivery never adds a row), ``request_id``,
``occurred_at`` and ``trace_id`` columns, and an index on ``occurred_at`` for newest-first reads.
"""

from __future__ import annotations

import os
from pathlib import Path

import peewee

database = peewee.DatabaseProxy()

# WAL lets the API and the agent read while the consumer writes; busy_timeout makes a
# reader's short lock a wait instead of an error.
PRAGMAS = {"journal_mode": "wal", "busy_timeout": 5000, "synchronous": "normal",
           "foreign_keys": 1}


class BaseModel(peewee.Model):
    class Meta:
        database = database


class EventModel(BaseModel):
    event_id = peewee.CharField(max_length=64, unique=True)
    request_id = peewee.CharField(max_length=128, index=True)
    occurred_at = peewee.CharField(max_length=32, index=True)  # ISO-8601 UTC, sorts as text
    trace_id = peewee.CharField(max_length=32, null=True)
    hostname = peewee.CharField(max_length=255, default="")
    persisted_at = peewee.CharField(max_length=32, index=True)  # for /events?order=persisted


class HttpRequest(EventModel):
    method = peewee.CharField(max_length=16)
    route = peewee.CharField(max_length=255)
    path = peewee.TextField()
    query = peewee.TextField(default="")
    user_ip = peewee.CharField(max_length=64)
    proxy_chain = peewee.TextField(default="")
    user_agent = peewee.TextField(default="")
    bytes = peewee.IntegerField(default=0)

    class Meta:
        table_name = "http_requests"


class HttpResponse(HttpRequest):
    status = peewee.IntegerField(index=True)
    duration_ms = peewee.FloatField()

    class Meta:
        table_name = "http_responses"


class ErrorEvent(EventModel):
    method = peewee.CharField(max_length=16)
    route = peewee.CharField(max_length=255)
    path = peewee.TextField()
    status = peewee.IntegerField()
    error = peewee.CharField(max_length=255)
    message = peewee.TextField(default="")

    class Meta:
        table_name = "errors"


class CustomEvent(EventModel):
    event_type = peewee.CharField(max_length=64)
    payload = peewee.TextField()  # the caller's JSON object, as JSON text

    class Meta:
        table_name = "custom_events"
        indexes = ((("event_type", "occurred_at"), False),)


class DeadLetter(BaseModel):
    # topic/partition/offset plus a digest of the bytes: a redelivered bad message is one row,
    # while a broker that restarted and reused the offset for other bytes still gets a new one.
    dedup_key = peewee.CharField(max_length=400, unique=True)
    topic = peewee.CharField(max_length=249)
    partition = peewee.IntegerField()
    offset = peewee.BigIntegerField()
    raw = peewee.BlobField()
    error = peewee.TextField()
    received_at = peewee.CharField(max_length=32, index=True)

    class Meta:
        table_name = "dead_letters"


def insert_ignore(model: type[BaseModel], rows: list[dict]) -> None:
    """INSERT OR IGNORE rows (all with the same keys) in one executemany.

    peewee's insert_many builds the SQL value by value: measured 4-5x slower than this for
    the consumer's batches (bench/consumer_throughput.py). The statement only depends on the
    model and the keys, so it is built once per call from the model's own metadata."""
    if not rows:
        return
    names = list(rows[0])
    columns = ", ".join(f'"{model._meta.fields[name].column_name}"' for name in names)
    sql = (f'INSERT OR IGNORE INTO "{model._meta.table_name}" ({columns}) '
           f'VALUES ({", ".join("?" * len(names))})')
    model._meta.database.cursor().executemany(sql, [tuple(row[n] for n in names) for row in rows])


EVENT_MODELS = (HttpRequest, HttpResponse, ErrorEvent, CustomEvent)
ALL_MODELS = (*EVENT_MODELS, DeadLetter)


class Store:
    """One SQLite connection; reopened when the file it points at was removed or replaced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db: peewee.SqliteDatabase | None = None
        self._inode: int | None = None

    def open(self) -> peewee.SqliteDatabase:
        """Connect (creating the directory and schema when missing) unless already connected
        to the file that is there now. Raises peewee/OS errors when it cannot."""
        if self.db is not None and self._inode == self._current_inode():
            return self.db
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = peewee.SqliteDatabase(str(self.path), pragmas=PRAGMAS)
        database.initialize(db)
        db.connect()
        try:
            db.create_tables(ALL_MODELS, safe=True)
        except Exception:
            db.close()
            raise
        self.db, self._inode = db, self._current_inode()
        return db

    def _current_inode(self) -> int | None:
        try:
            return os.stat(self.path).st_ino
        except OSError:
            return None

    def close(self) -> None:
        if self.db is not None:
            try:
                self.db.close()
            except peewee.PeeweeException:
                pass  # teardown of a connection that already failed: nothing left to save
            self.db = None

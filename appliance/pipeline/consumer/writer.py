"""One batch of messages into the audit database: one transaction, exactly one row per event.

Duplicates are ignored by the unique event_id, messages that are not storable events become
dead letters (persist.classify). Two kinds of failure are told apart:
- the database is not usable now (locked, read-only, full, removed, corrupt): write() says
  False, and the consumer rewinds and tries the batch again after a back-off: nothing skipped;
- the database refuses a row (a constraint, a value it cannot bind): the batch is written again
  message by message, and what it refuses becomes a dead letter with the database's error, so
  no single message can stop persistence.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

import peewee
import psycopg

from appliance.core import sensors, tracing
from appliance.core.config import Settings
from appliance.core.database import ERRORS as DB_ERRORS
from appliance.core.database_url import describe_error
from appliance.core.timefmt import utc_now_iso
from appliance.pipeline.consumer import persist
from appliance.pipeline.consumer.store import Store, insert_ignore
from appliance.schema import audit_db

log = logging.getLogger("appliance.consumer")
# A row the database will never take, whenever it is tried: the message, not the database.
REFUSED_ROW = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError,
               peewee.IntegrityError, peewee.DataError, peewee.InterfaceError,
               psycopg.IntegrityError, psycopg.DataError,  # e.g. a NUL in a PostgreSQL text
               OverflowError, ValueError, TypeError, RecursionError)
OPEN_RETRY = 5.0  # seconds between attempts to open a database that is not usable yet


class BatchWriter:
    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store or Store(settings.database_url)
        self.persisted: dict[str, int] = {}  # rows per table since start
        self.dead_letters = 0
        self.db_errors = 0
        self.last_db_error: str | None = None
        self.last_persisted_at: str | None = None
        sensors.on_event_tables(audit_db.table_name(model) for model in audit_db.EVENT_MODELS)

    def open_until_ready(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.store.open()
                return
            except DB_ERRORS as exc:
                self.failed(exc)
                log.warning("database not usable yet", extra={
                    "error": self.last_db_error, "database": self.settings.database_url.redacted()})
                stop.wait(OPEN_RETRY)

    def write(self, messages: list) -> bool:
        """Persist the batch; False (and the fault recorded) when the database is not usable."""
        persisted_at = utc_now_iso()
        batch = persist.classify(messages, persisted_at)
        started, started_ns = time.perf_counter(), time.time_ns()
        try:
            try:
                self._insert(batch)
            except REFUSED_ROW as exc:
                batch = self._one_by_one(messages, persisted_at, exc)
            self.store.check_still_there()
        except Exception as exc:  # DB_ERRORS, or a surprise: either way, nothing is committed
            self.failed(exc)
            self.store.close()
            return False
        self.last_db_error, self.last_persisted_at = None, utc_now_iso()
        seconds = time.perf_counter() - started
        if tracing.enabled():
            self._trace(messages, started_ns)
        self._count(batch, seconds)
        return True

    def _insert(self, batch: persist.Batch) -> None:
        with self.store.open().atomic():
            for model, rows in batch.rows.items():
                insert_ignore(model, rows)
            insert_ignore(audit_db.DeadLetter, batch.dead_letters)
            mark_replays(batch.replays, batch.persisted_at)

    def _one_by_one(self, messages: list, persisted_at: str, first: Exception) -> persist.Batch:
        """The database refused a row of the batch: find which, store the rest."""
        log.warning("the database refused a row; writing the batch message by message",
                    extra={"error": describe_error(first, self.settings.database_url),
                           "messages": len(messages)})
        kept = persist.Batch(persisted_at=persisted_at)
        for msg in messages:
            one = persist.classify([msg], persisted_at)
            try:
                self._insert(one)
            except REFUSED_ROW as exc:
                one = persist.Batch(persisted_at=persisted_at)
                persist.refuse(one, msg, f"the database refused it: "
                                         f"{describe_error(exc, self.settings.database_url)}", persisted_at)
                self._insert(one)
            for model, rows in one.rows.items():
                kept.rows[model].extend(rows)
            kept.dead_letters.extend(one.dead_letters)
            kept.replays.extend(one.replays)
        return kept

    def failed(self, exc: Exception) -> None:
        self.db_errors += 1
        sensors.on_database_error()
        self.last_db_error = describe_error(exc, self.settings.database_url)

    def _count(self, batch: persist.Batch, seconds: float) -> None:
        rows = {audit_db.table_name(model): len(found) for model, found in batch.rows.items()}
        for name, count in rows.items():
            self.persisted[name] = self.persisted.get(name, 0) + count
        sensors.on_batch_persisted(rows, len(batch.dead_letters), seconds)
        if batch.dead_letters:
            self.dead_letters += len(batch.dead_letters)
            log.warning("dead letters stored", extra={"count": len(batch.dead_letters),
                                                      "first_error": batch.dead_letters[0]["error"]})

    def _trace(self, messages: list, started_ns: int) -> None:
        """One CONSUMER span per persisted event, child of the span that produced it."""
        topic = self.settings.kafka_topic_events
        for msg in messages:
            span = tracing.consumer_span(topic, msg.headers(), started_ns,
                                         self.settings.database_url.scheme)
            span.set_attributes({"messaging.kafka.offset": msg.offset(),
                                 "messaging.destination.partition.id": str(msg.partition())})
            span.end()

    def close(self) -> None:
        self.store.close()


def mark_replays(replays: list[tuple[str, str, str | None]], at: str) -> None:
    """Say on each replayed dead letter how its copy went; a failed one gets its new reason."""
    letters = audit_db.DeadLetter
    for key, outcome, error in replays:
        changes = {letters.replayed_at: at, letters.replay_outcome: outcome}
        if error is not None:
            changes[letters.error] = error
        letters.update(changes).where(letters.dedup_key == key).execute()

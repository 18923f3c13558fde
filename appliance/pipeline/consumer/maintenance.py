"""Keep the audit database within its limits: RETENTION_DAYS and DB_MAX_MB.

The consumer is the database's one writer, so this runs on its thread, between batches, in
steps small enough to hold the writes back by a few milliseconds: each step deletes at most
PRUNE_BATCH rows of one table (the oldest first), then gives at most VACUUM_PAGES freed pages
back to the filesystem (incremental auto-vacuum), so the file shrinks. Dead letters follow the
same rules (by when they were received). Rows of schema version 1 get their ``user_ip_key``
filled in the same way, a batch at a time.

On PostgreSQL the age limit applies the same way (the consumers of N appliances may prune at
once: each deletes the oldest batch it finds, and a row deleted twice is deleted once). DB_MAX_MB
does not: PostgreSQL keeps the space of deleted rows for its new rows rather than giving it back
to the filesystem, so no size it reports goes down when rows are deleted, and pruning until it
did would delete everything. There the database's size is its operator's, and /status shows it.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone

import peewee

from appliance.core import sensors
from appliance.core.config import Settings
from appliance.core.database import is_postgres
from appliance.core.timefmt import iso
from appliance.pipeline.consumer.store import Store
from appliance.schema import audit_db

log = logging.getLogger("appliance.consumer")
PRUNE_BATCH = 200  # rows deleted (or filled in) per step
VACUUM_PAGES = 500  # pages (4 KiB) given back per step
STEP_EVERY = 1.0  # seconds between steps while there is nothing to do; at once while there is


class Maintenance:
    def __init__(self, settings: Settings, store: Store, clock=time.monotonic) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.pruned: dict[str, int] = {}
        self.oldest_event_at: str | None = None
        self.size_mb: float | None = None
        self._next_at = 0.0
        sensors.on_retention_tables(audit_db.table_name(model) for model in audit_db.ALL_MODELS)

    def due(self) -> bool:
        return self.clock() >= self._next_at

    def rest(self) -> None:
        self._next_at = self.clock() + STEP_EVERY

    def step(self, now: datetime | None = None) -> int:
        """One small piece of work, the first there is: fill in, prune by age, prune by size,
        give pages back. How many rows it touched (0: nothing to do, rest a while)."""
        started = time.perf_counter()
        db = self.store.open()
        done = (self._backfill(db) or self._prune_by_age(now or datetime.now(timezone.utc))
                or self._prune_by_size(db) or self._vacuum(db))
        self._measure(db)
        self._next_at = self.clock() + (0.0 if done else STEP_EVERY)
        sensors.on_maintenance_step(time.perf_counter() - started)
        return done

    def _prune_by_age(self, now: datetime) -> int:
        if not self.settings.retention_days:
            return 0
        cutoff = iso(now - timedelta(days=self.settings.retention_days))
        for model in audit_db.ALL_MODELS:
            deleted = self._delete_oldest(model, cutoff)
            if deleted:
                return deleted
        return 0

    def _prune_by_size(self, db: peewee.Database) -> int:
        limit = self.settings.db_max_mb
        if not limit or is_postgres(db) or used_bytes(db) <= limit * 2**20:
            return 0
        # The oldest go first, whatever their table: delete up to the PRUNE_BATCH-th oldest.
        oldest = " UNION ALL ".join(
            f'SELECT * FROM (SELECT "{f.column_name}" AS at FROM "{f.model._meta.table_name}" '
            f'ORDER BY "{f.column_name}" LIMIT {PRUNE_BATCH})'
            for f in audit_db.TIME_FIELD.values())
        row = db.execute_sql(f"SELECT at FROM ({oldest}) ORDER BY at LIMIT 1 OFFSET "
                             f"{PRUNE_BATCH - 1}").fetchone()
        if row is None:  # fewer rows than a batch in all: the newest of them
            row = db.execute_sql(f"SELECT MAX(at) FROM ({oldest})").fetchone()
        return sum(self._delete_oldest(model, row[0], inclusive=True) for model in audit_db.ALL_MODELS)

    def _vacuum(self, db: peewee.Database) -> int:
        if is_postgres(db):
            return 0  # autovacuum's job
        free = db.execute_sql("PRAGMA freelist_count").fetchone()[0]
        if free:
            db.execute_sql(f"PRAGMA incremental_vacuum({VACUUM_PAGES})")
        return min(free, VACUUM_PAGES)

    def _delete_oldest(self, model, cutoff: str, inclusive: bool = False) -> int:
        field = audit_db.TIME_FIELD[model]
        older = (field <= cutoff) if inclusive else (field < cutoff)
        doomed = model.select(model.id).where(older).order_by(field).limit(PRUNE_BATCH)
        deleted = model.delete().where(model.id.in_(doomed)).execute()
        if deleted:
            name = audit_db.table_name(model)
            self.pruned[name] = self.pruned.get(name, 0) + deleted
            sensors.on_rows_pruned(name, deleted)
        return deleted

    def _backfill(self, db: peewee.Database) -> int:
        """user_ip_key for rows written before schema version 2."""
        for model in (audit_db.HttpRequest, audit_db.HttpResponse):
            rows = list(model.select(model.id, model.user_ip).where(model.user_ip_key.is_null())
                        .limit(PRUNE_BATCH).tuples())
            if rows:
                with db.atomic():
                    db.cursor().executemany(
                        f'UPDATE "{audit_db.table_name(model)}" SET user_ip_key = {db.param} '
                        f'WHERE id = {db.param}',
                        [(audit_db.ip_key(ip), row_id) for row_id, ip in rows])
                return len(rows)
        return 0

    def _measure(self, db: peewee.Database) -> None:
        self.size_mb = round(used_bytes(db) / 2**20, 1)
        oldest = [m.select(peewee.fn.MIN(m.occurred_at)).scalar() for m in audit_db.EVENT_MODELS]
        self.oldest_event_at = min((o for o in oldest if o), default=None)


def used_bytes(db: peewee.Database) -> int:
    """What the database holds, without the pages it could give back (PostgreSQL: the size of
    the appliance's tables and their indexes)."""
    if is_postgres(db):
        tables = [audit_db.table_name(m) for m in audit_db.ALL_MODELS]
        return int(db.execute_sql(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "WHERE c.relname = ANY(%s) AND c.relnamespace = current_schema()::regnamespace",
            (tables,)).fetchone()[0])
    pages = db.execute_sql("PRAGMA page_count").fetchone()[0]
    free = db.execute_sql("PRAGMA freelist_count").fetchone()[0]
    size = db.execute_sql("PRAGMA page_size").fetchone()[0]
    return (pages - free) * size

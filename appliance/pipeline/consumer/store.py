"""The consumer's side of the audit database: its writer's connection, and the schema.

The models are in schema/audit_db.py; this module opens them for writing (creating the schema
when missing, reopening a SQLite file that was removed or replaced) and inserts batches. With
SQLite the consumer is the one writer; with PostgreSQL (DATABASE_URL) the consumers of N
appliances write the same tables, so the schema is created and migrated under a lock.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import peewee

from appliance.core.database import ERRORS, is_postgres, open_database
from appliance.core.database_url import DatabaseUrl
from appliance.schema import audit_db
from appliance.schema.audit_db import ALL_MODELS, BaseModel, SchemaMeta, database

log = logging.getLogger("appliance.consumer")
INCREMENTAL = 2  # PRAGMA auto_vacuum: pages freed by deletions can be given back to the disk
CACHE_KIB = 32_768  # page cache of the writer: its indexes' hot pages stay in memory
MIGRATION_LOCK = 0x5354_4d49  # pg_advisory_xact_lock key: one appliance migrates at a time
# Range-read text columns compared byte by byte on PostgreSQL too, as in SQLite: a path prefix is
# an index range, which a locale's collation (where "/a-b" and "/ab" sort together) would break.
BYTE_ORDERED = {audit_db.HttpRequest: ("path",), audit_db.HttpResponse: ("path",),
                audit_db.ErrorEvent: ("path",)}


class NewerSchema(peewee.DatabaseError):
    """The database was written by a newer appliance: this one must not change it."""


def migrate(db: peewee.Database) -> None:
    """Create the schema, or bring an older one to SCHEMA_VERSION; safe to run every time, and
    by several appliances at once (PostgreSQL: one at a time, under an advisory lock)."""
    with db.atomic():
        if is_postgres(db):
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        found = _version(db)
        if found > audit_db.SCHEMA_VERSION:
            raise NewerSchema(f"the database has schema version {found}; this appliance knows "
                              f"{audit_db.SCHEMA_VERSION}: use the newer appliance, or another "
                              f"DATABASE_URL")
        tables = db.get_tables()
        for model, column, kind in audit_db.ADDED_COLUMNS:  # versions 2 and 4
            table = model._meta.table_name
            if table in tables and column not in {c.name for c in db.get_columns(table)}:
                db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN {column} {kind}')
        db.create_tables((*ALL_MODELS, SchemaMeta), safe=True)  # missing tables and indexes
        if is_postgres(db):
            _byte_ordered(db)
        if found != audit_db.SCHEMA_VERSION:
            (SchemaMeta.insert(name="schema_version", value=str(audit_db.SCHEMA_VERSION))
             .on_conflict(conflict_target=[SchemaMeta.name], preserve=[SchemaMeta.value]).execute())
            log.info("database schema ready", extra={"from_version": found,
                                                     "version": audit_db.SCHEMA_VERSION})
    if not is_postgres(db):
        _incremental_vacuum(db)


def _byte_ordered(db: peewee.Database) -> None:
    for model, columns in BYTE_ORDERED.items():
        for column in columns:
            collation = db.execute_sql(
                "SELECT collation_name FROM information_schema.columns WHERE table_schema = "
                "current_schema() AND table_name = %s AND column_name = %s",
                (model._meta.table_name, column)).fetchone()[0]
            if collation != "C":
                db.execute_sql(f'ALTER TABLE "{model._meta.table_name}" ALTER COLUMN "{column}" '
                               f'TYPE TEXT COLLATE "C"')


def _incremental_vacuum(db: peewee.Database) -> None:
    if db.execute_sql("PRAGMA auto_vacuum").fetchone()[0] != INCREMENTAL:
        log.warning("converting the database to incremental auto-vacuum, once (VACUUM)",
                    extra={"db_path": db.database})
        db.execute_sql(f"PRAGMA auto_vacuum = {INCREMENTAL}")
        db.execute_sql("VACUUM")


def _version(db: peewee.Database) -> int:
    tables = db.get_tables()
    if "schema_meta" in tables:
        row = SchemaMeta.get_or_none(SchemaMeta.name == "schema_version")
        return int(row.value) if row else 1
    return 1 if "http_responses" in tables else 0


def insert_ignore(model: type[BaseModel], rows: list[dict]) -> None:
    """Insert rows (all with the same keys) in one executemany, skipping those whose unique key
    (event_id, a dead letter's dedup_key) is already there: ON CONFLICT DO NOTHING, the same
    statement in SQLite and PostgreSQL.

    peewee's insert_many builds the SQL value by value: measured 4-5x slower than this for
    the consumer's batches (bench/consumer_throughput.py). The statement only depends on the
    model and the keys, so it is built once per call from the model's own metadata."""
    if not rows:
        return
    names = list(rows[0])
    columns = ", ".join(f'"{model._meta.fields[name].column_name}"' for name in names)
    db = model._meta.database
    sql = (f'INSERT INTO "{model._meta.table_name}" ({columns}) '
           f'VALUES ({", ".join([db.param] * len(names))}) ON CONFLICT DO NOTHING')
    db.cursor().executemany(sql, [tuple(row[n] for n in names) for row in rows])


class DatabaseReplaced(OSError):
    """The file at DB_PATH is no longer the one the consumer wrote into."""


class Store:
    """The writer's connection to DATABASE_URL. A SQLite file is reopened when the file it points
    at was removed or replaced; a PostgreSQL connection when it was lost."""

    def __init__(self, url: DatabaseUrl | Path) -> None:
        self.url = url if isinstance(url, DatabaseUrl) else DatabaseUrl("sqlite", path=Path(url))
        self.db: peewee.Database | None = None
        self._inode: int | None = None

    def open(self) -> peewee.Database:
        """Connect (creating the directory and schema when missing) unless already connected
        to the database that is there now. Raises the database's errors when it cannot."""
        if self.db is not None and self._inode == self._current_inode():
            return self.db
        self.close()
        db = open_database(self.url, purpose="consumer", auto_vacuum=INCREMENTAL, foreign_keys=1,
                           cache_size=-CACHE_KIB)
        database.initialize(db)
        db.connect()
        try:
            migrate(db)
        except Exception:
            db.close()
            raise
        self.db, self._inode = db, self._current_inode()
        return db

    def check_still_there(self) -> None:
        """Raise DatabaseReplaced when the SQLite file was removed or replaced since it was
        opened: what was just committed went into a file nobody will read, so the batch must be
        written again (into the new file) before its offsets are committed."""
        if self.db is not None and self._current_inode() != self._inode:
            raise DatabaseReplaced(f"{self.url.path} was removed or replaced while in use")

    def _current_inode(self) -> int | None:
        if self.url.is_postgres:
            return None
        try:
            return os.stat(self.url.path).st_ino
        except OSError:
            return None

    def close(self) -> None:
        if self.db is not None:
            try:
                if is_postgres(self.db):
                    self.db.close_all()  # a lost connection must not go back to the pool
                else:
                    self.db.close()
            except ERRORS:
                pass  # teardown of a connection that already failed: nothing left to save
            self.db = None

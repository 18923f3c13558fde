"""The consumer's side of the audit database: the one writer, and its connection.

The models are in schema/audit_db.py; this module opens them for writing (creating the file and
the schema when missing, reopening when the file was removed or replaced) and inserts batches.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import peewee

from appliance.core import sqlite
from appliance.schema import audit_db
from appliance.schema.audit_db import ALL_MODELS, BaseModel, SchemaMeta, database

log = logging.getLogger("appliance.consumer")
INCREMENTAL = 2  # PRAGMA auto_vacuum: pages freed by deletions can be given back to the disk
CACHE_KIB = 32_768  # page cache of the writer: its indexes' hot pages stay in memory


class NewerSchema(peewee.DatabaseError):
    """The database was written by a newer appliance: this one must not change it."""


def migrate(db: peewee.Database) -> None:
    """Create the schema, or bring an older one to SCHEMA_VERSION; safe to run every time."""
    found = _version(db)
    if found > audit_db.SCHEMA_VERSION:
        raise NewerSchema(f"the database has schema version {found}; this appliance knows "
                          f"{audit_db.SCHEMA_VERSION}: use the newer appliance, or another DB_PATH")
    for model in (audit_db.HttpRequest, audit_db.HttpResponse):  # version 2
        table = model._meta.table_name
        if table in db.get_tables() and "user_ip_key" not in {c.name for c in db.get_columns(table)}:
            db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN user_ip_key VARCHAR(32)')
    db.create_tables((*ALL_MODELS, SchemaMeta), safe=True)  # missing tables and indexes
    if db.execute_sql("PRAGMA auto_vacuum").fetchone()[0] != INCREMENTAL:
        log.warning("converting the database to incremental auto-vacuum, once (VACUUM)",
                    extra={"db_path": db.database})
        db.execute_sql(f"PRAGMA auto_vacuum = {INCREMENTAL}")
        db.execute_sql("VACUUM")
    if found != audit_db.SCHEMA_VERSION:
        SchemaMeta.insert(name="schema_version", value=str(audit_db.SCHEMA_VERSION)).on_conflict_replace().execute()
        log.info("database schema ready", extra={"from_version": found,
                                                 "version": audit_db.SCHEMA_VERSION})


def _version(db: peewee.Database) -> int:
    tables = db.get_tables()
    if "schema_meta" in tables:
        row = SchemaMeta.get_or_none(SchemaMeta.name == "schema_version")
        return int(row.value) if row else 1
    return 1 if "http_responses" in tables else 0


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


class DatabaseReplaced(OSError):
    """The file at DB_PATH is no longer the one the consumer wrote into."""


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
        db = sqlite.peewee_database(self.path, auto_vacuum=INCREMENTAL, foreign_keys=1,
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
        """Raise DatabaseReplaced when the file was removed or replaced since it was opened: what
        was just committed went into a file nobody will read, so the batch must be written
        again (into the new file) before its offsets are committed."""
        if self.db is not None and self._current_inode() != self._inode:
            raise DatabaseReplaced(f"{self.path} was removed or replaced while in use")

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

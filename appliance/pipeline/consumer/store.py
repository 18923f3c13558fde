"""The consumer's side of the audit database: the one writer, and its connection.

The models are in schema/audit_db.py; this module opens them for writing (creating the file and
the schema when missing, reopening when the file was removed or replaced) and inserts batches.
"""

from __future__ import annotations

import os
from pathlib import Path

import peewee

from appliance.core import sqlite
from appliance.schema.audit_db import ALL_MODELS, BaseModel, database


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
        db = sqlite.peewee_database(self.path, foreign_keys=1)
        database.initialize(db)
        db.connect()
        try:
            db.create_tables(ALL_MODELS, safe=True)
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

"""SQLite, opened one way everywhere: the pragmas, read-only connections, peewee databases.

WAL lets readers (the API, the agent) read while the one writer writes; synchronous=NORMAL
keeps a committed transaction through a crash of the process (not necessarily a power cut) at a
fraction of FULL's cost; busy_timeout turns a writer's short lock into a wait, not an error.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Iterator

import peewee

BUSY_TIMEOUT_MS = 5000
PRAGMAS = {"journal_mode": "wal", "synchronous": "normal", "busy_timeout": BUSY_TIMEOUT_MS}
READ_TIMEOUT_MS = 2000  # a reader gives up sooner than the writer: it only reports


def connect(path: Path) -> sqlite3.Connection:
    """A writer's sqlite3 connection (autocommit: the caller says BEGIN), directory created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    for name, value in PRAGMAS.items():
        db.execute(f"PRAGMA {name}={value}")
    return db


@contextlib.contextmanager
def read_only(path: Path, timeout_ms: int = READ_TIMEOUT_MS) -> Iterator[sqlite3.Connection]:
    """A read-only connection: a reader must never create or lock what it looks at."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout_ms / 1000)
    try:
        yield db
    finally:
        db.close()


def peewee_database(path: Path, readonly: bool = False, **pragmas) -> peewee.SqliteDatabase:
    """A peewee database with the same pragmas (or read-only), not connected yet. The caller's
    ``pragmas`` are applied first: auto_vacuum, for one, only takes on a new file before
    journal_mode=WAL has written its header."""
    if readonly:
        return peewee.SqliteDatabase(f"file:{path}?mode=ro", uri=True,
                                     pragmas={"busy_timeout": READ_TIMEOUT_MS})
    path.parent.mkdir(parents=True, exist_ok=True)
    return peewee.SqliteDatabase(str(path), pragmas={**pragmas, **PRAGMAS})

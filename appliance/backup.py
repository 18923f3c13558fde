"""`simple-time-service backup FILE`: a consistent copy of the SQLite audit database, taken
while the appliance runs.

SQLite's online backup API, in one step: the copy is the database as of one moment (a read
transaction; in WAL mode it never blocks the consumer's writes, and the consumer never makes it
start over, as a copy in many small steps would while batches keep arriving). The copy is checked
(``PRAGMA integrity_check``) and only then moved to FILE, so FILE is never half a database.
Restoring is putting the file back at DB_PATH with the consumer stopped (docs/operations.md).
PostgreSQL has its own tools: pg_dump.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from pathlib import Path

from appliance.core import sqlite
from appliance.core.config import Settings


def add_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("file", type=Path, help="where to write the copy (replaced if it exists)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    if settings.database_url.is_postgres:
        return _fail("DATABASE_URL is PostgreSQL: back it up with pg_dump (docs/operations.md)")
    source = settings.db_path
    if not source.exists():
        return _fail(f"no audit database at {source} (DB_PATH): nothing to back up")
    target = args.file.expanduser().resolve()
    partial = target.with_name(f".{target.name}.partial")
    try:
        rows = copy(source, partial)
        os.replace(partial, target)
    except (OSError, sqlite3.Error, BackupError) as exc:
        partial.unlink(missing_ok=True)
        return _fail(f"backup of {source} failed: {exc}")
    print(f"{target}: {rows} events, {target.stat().st_size:,} bytes")
    return 0


class BackupError(Exception):
    pass


def copy(source: Path, target: Path) -> int:
    """Copy ``source`` to ``target`` (a new file) in one step; the events it holds."""
    target.unlink(missing_ok=True)
    with sqlite.read_only(source) as db:
        destination = sqlite3.connect(target)
        try:
            db.backup(destination)  # pages=-1: everything, under one read transaction
            check = destination.execute("PRAGMA integrity_check").fetchone()[0]
            if check != "ok":
                raise BackupError(f"the copy is not sound: {check}")
            return _events(destination)
        finally:
            destination.close()


def _events(db: sqlite3.Connection) -> int:
    tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
              if name in ("http_requests", "http_responses", "errors", "custom_events")]
    return sum(db.execute(f"SELECT count(*) FROM {name}").fetchone()[0] for name in tables)


def _fail(message: str) -> int:
    print(f"simple-time-service backup: {message}", file=sys.stderr)
    return 1

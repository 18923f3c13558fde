"""Opening the audit database named by DATABASE_URL (core/database_url.py), whatever its
engine, and the errors either engine raises when it is not usable.
"""

from __future__ import annotations

import sqlite3

import peewee
import psycopg
from playhouse.pool import PooledPostgresqlDatabase

from appliance.core import sqlite
from appliance.core.database_url import DatabaseUrl

CONNECT_TIMEOUT_S = 5  # a PostgreSQL that does not answer is a fault like a locked file
READ_STATEMENT_TIMEOUT_MS = 30_000  # a reader (the API, the agent) never holds a query longer
POOL_SIZE, POOL_STALE_S, POOL_WAIT_S = 16, 300, 10  # connections per process; idle life; wait
# Every error the database can raise when it is not usable (or refuses), whatever the engine.
ERRORS = (peewee.PeeweeException, sqlite3.Error, psycopg.Error, OSError)


def is_postgres(db: peewee.Database) -> bool:
    return isinstance(db, peewee.PostgresqlDatabase)


def open_database(url: DatabaseUrl, readonly: bool = False, purpose: str = "appliance",
                  **sqlite_pragmas) -> peewee.Database:
    """A peewee database for ``url``, not connected yet. Read-only for the API and the agent:
    a reader must never create or change what it looks at."""
    if not url.is_postgres:
        return sqlite.peewee_database(url.path, readonly=readonly, **sqlite_pragmas)
    settings = ["-c timezone=UTC"]
    if readonly:
        settings += ["-c default_transaction_read_only=on",
                     f"-c statement_timeout={READ_STATEMENT_TIMEOUT_MS}"]
    # Pooled: the API's threads each take a connection per request and give it back, instead of
    # a TCP connect and authentication per request.
    return PooledPostgresqlDatabase(
        url.name, max_connections=POOL_SIZE, stale_timeout=POOL_STALE_S, timeout=POOL_WAIT_S,
        host=url.host, port=url.port, user=url.user, password=url.password or None,
        connect_timeout=int(url.options.get("connect_timeout", CONNECT_TIMEOUT_S)),
        application_name=url.options.get("application_name", f"simple-time-service {purpose}"),
        options=" ".join(settings),
        **{k: v for k, v in url.options.items() if k not in ("connect_timeout", "application_name")})


def exists(url: DatabaseUrl) -> bool:
    """Whether there is anything to read yet: a SQLite file that is there; a PostgreSQL
    database always counts (whether it answers is the next question)."""
    return url.is_postgres or url.path.exists()

"""DATABASE_URL: which database holds the audit trail. A SQLite file (the default, under
DATA_DIR) or a PostgreSQL database shared by N appliances:

    sqlite:///var/lib/sts/events.db      the text after "sqlite://" is the path (here absolute)
    sqlite://data/events.db              a relative path
    postgresql://user:password@host:5432/dbname?sslmode=require

The password is kept out of every representation: ``redacted()`` is what logs, /status and
errors show, and a bad value's startup error does not repeat it.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

EXPECTED = "sqlite:///PATH or postgresql://USER:PASSWORD@HOST[:PORT]/DBNAME"
PG_OPTIONS = frozenset({"sslmode", "sslrootcert", "sslcert", "sslkey", "application_name",
                        "target_session_attrs", "connect_timeout"})


@dataclass(frozen=True)
class DatabaseUrl:
    scheme: str  # "sqlite" or "postgresql"
    path: Path | None = None  # sqlite
    host: str = ""
    port: int = 5432
    user: str = ""
    password: str = field(default="", repr=False)
    name: str = ""
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_postgres(self) -> bool:
        return self.scheme == "postgresql"

    def redacted(self) -> str:
        if not self.is_postgres:
            return f"sqlite://{self.path}"
        secret = ":***" if self.password else ""
        return f"postgresql://{self.user}{secret}@{self.host}:{self.port}/{self.name}"

    def __repr__(self) -> str:
        return f"DatabaseUrl({self.redacted()!r})"

    __str__ = redacted


def parse(raw: str) -> DatabaseUrl:
    """DATABASE_URL as a DatabaseUrl; ValueError saying what is expected (never echoing it)."""
    text = raw.strip()
    if text.startswith("sqlite://"):
        path = text[len("sqlite://"):]
        if not path:
            raise ValueError(f"{EXPECTED} (the sqlite path is empty)")
        return DatabaseUrl("sqlite", path=Path(path))
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(EXPECTED)
    try:
        port = parts.port or 5432
    except ValueError:
        raise ValueError(f"{EXPECTED} (the port is not a number from 1 to 65535)") from None
    name = urllib.parse.unquote(parts.path.lstrip("/"))
    if not parts.hostname or not name or not parts.username:
        raise ValueError(f"{EXPECTED} (user, host and database name are required)")
    options = dict(urllib.parse.parse_qsl(parts.query))
    if not options.get("connect_timeout", "1").isdigit():
        raise ValueError(f"{EXPECTED} (connect_timeout: whole seconds)")
    unknown = sorted(set(options) - PG_OPTIONS)
    if unknown:
        raise ValueError(f"{EXPECTED}; query options from {', '.join(sorted(PG_OPTIONS))} "
                         f"(not {', '.join(unknown)})")
    return DatabaseUrl("postgresql", host=parts.hostname, port=port,
                       user=urllib.parse.unquote(parts.username),
                       password=urllib.parse.unquote(parts.password or ""), name=name,
                       options=options)


def describe_error(exc: BaseException, url: DatabaseUrl) -> str:
    """An error as users see it: its type and text, with the password (should a driver ever
    repeat it) taken out."""
    text = f"{type(exc).__name__}: {exc}".strip()
    if url.password:
        text = text.replace(url.password, "***")
        text = text.replace(urllib.parse.quote(url.password, safe=""), "***")
    return text

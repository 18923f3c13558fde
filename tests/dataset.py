"""Known data sets for the audit trail, written through the consumer's own code (classify and
the store), so what the tests read is exactly what the consumer would have written."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from appliance.core import database_url
from appliance.core.timefmt import iso
from appliance.pipeline.consumer import persist, store
from appliance.schema import audit_db, events

BASE = datetime(2026, 11, 30, 12, 0, 0, tzinfo=timezone.utc)


@dataclass
class Message:
    raw: bytes
    number: int

    def value(self) -> bytes:
        return self.raw

    def topic(self) -> str:
        return "simple-time-events"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self.number

    def headers(self):
        return None


def event(event_type: str, request_id: str, at: datetime, payload: dict[str, Any],
          trace_id: str | None = None) -> dict[str, Any]:
    made = events.make_event(event_type, request_id, "host-1", payload, trace_id)
    made["occurred_at"] = iso(at)
    return made


def http_pair(request_id: str, at: datetime, *, path: str = "/", route: str = "/",
              method: str = "GET", status: int = 200, duration_ms: float = 1.0,
              user_ip: str = "203.0.113.9", proxy_chain: str = "",
              trace_id: str | None = None) -> list[dict[str, Any]]:
    """The request and response events of one exchange."""
    common = {"method": method, "route": route, "path": path, "query": "", "user_ip": user_ip,
              "proxy_chain": proxy_chain, "user_agent": "dataset"}
    return [event(events.HTTP_REQUEST, request_id, at, {**common, "bytes": 0}, trace_id),
            event(events.HTTP_RESPONSE, request_id, at + timedelta(microseconds=1),
                  {**common, "status": status, "duration_ms": duration_ms, "bytes": 10}, trace_id)]


def write(db_path: Path | str, made: list[dict[str, Any]], persisted_at: datetime | None = None,
          raw: list[bytes] = ()) -> None:
    """Persist events (and raw messages, which become dead letters) as the consumer would, into
    a SQLite file or the database of a DATABASE_URL."""
    messages = [Message(events.encode(e), i) for i, e in enumerate(made)]
    messages += [Message(r, len(messages) + i) for i, r in enumerate(raw)]
    batch = persist.classify(messages, iso(persisted_at or datetime.now(timezone.utc)))
    target = store.Store(database_url.parse(db_path) if isinstance(db_path, str) else db_path)
    try:
        with target.open().atomic():
            for model, rows in batch.rows.items():
                store.insert_ignore(model, rows)
            store.insert_ignore(audit_db.DeadLetter, batch.dead_letters)
    finally:
        target.close()
    assert not [d for d in batch.dead_letters if d["raw"] not in raw], batch.dead_letters


def small(db_path: Path) -> None:
    """A few of everything, for a server that must answer every documented filter with data."""
    made = []
    for i in range(12):
        made += http_pair(f"small-{i}", BASE + timedelta(minutes=i), path=f"/p/{i % 3}",
                          status=(200, 404, 503)[i % 3], duration_ms=float(i),
                          user_ip=("203.0.113.9", "10.1.2.3", "2001:db8::1")[i % 3],
                          trace_id=f"{i:032x}")
    made.append(event("deploy.done", "small-deploy", BASE, {"version": 3}))
    write(db_path, made, raw=[b"not an event"])

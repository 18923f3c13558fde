"""A durable, bounded FIFO of Kafka messages that could not be delivered (yet).

SQLite in WAL mode with ``synchronous=NORMAL``: a row survives a crash or kill of the process
(not necessarily a power cut), and an append costs tens of microseconds, so request threads may
write here while Kafka is down. At ``max_bytes`` the oldest rows are dropped and counted; the
count is persisted so /kafka/status shows every drop since the spool was created.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from .metrics import M

log = logging.getLogger("appliance.spool")

Headers = list[tuple[str, bytes]]

SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key BLOB, value BLOB NOT NULL, headers TEXT, size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (name, value) VALUES ('dropped', 0);
"""


@dataclass(frozen=True)
class SpooledMessage:
    id: int
    key: bytes | None
    value: bytes
    headers: Headers


def _encode_headers(headers: Headers | None) -> str | None:
    # latin-1 maps every byte to one code point, so any header value round-trips through JSON.
    return json.dumps([[k, v.decode("latin-1")] for k, v in headers]) if headers else None


def _decode_headers(text: str | None) -> Headers:
    return [(k, v.encode("latin-1")) for k, v in json.loads(text)] if text else []


class _Ticket:
    """One caller's rows waiting for a group commit."""

    __slots__ = ("rows", "done", "error")

    def __init__(self, rows: list[tuple]) -> None:
        self.rows, self.done, self.error = rows, False, None


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "spool.db"
        self.max_bytes = max_bytes
        self._lock = threading.Lock()  # one committer (and reader) at a time
        self._queue_lock = threading.Lock()  # guards the queue of rows waiting for a commit
        self._queue: list[_Ticket] = []
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        self.depth, self.bytes = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM spool").fetchone()
        self.dropped = self._db.execute("SELECT value FROM meta WHERE name='dropped'").fetchone()[0]
        self.appended = 0  # since this process started

    def append(self, messages: list[tuple[bytes | None, bytes, Headers | None]]) -> None:
        """Store messages at the tail, in order, and return once they are committed.

        Group commit: while one thread commits, others queue their rows; the next thread to get
        the lock commits everything queued in one transaction. Under load (Kafka down, every
        request thread spooling) that is one transaction for many events instead of one each,
        and no caller returns before its rows are on disk."""
        if not messages:
            return
        ticket = _Ticket([(key, value, _encode_headers(headers), len(value) + len(key or b""))
                          for key, value, headers in messages])
        with self._queue_lock:
            self._queue.append(ticket)
        with self._lock:
            if not ticket.done:
                with self._queue_lock:
                    group, self._queue = self._queue, []
                self._commit(group)
        if ticket.error is not None:
            raise ticket.error

    def _commit(self, group: list["_Ticket"]) -> None:
        rows = [row for ticket in group for row in ticket.rows]
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT INTO spool (key, value, headers, size) VALUES (?, ?, ?, ?)", rows)
        except Exception as exc:  # every waiting caller learns its rows were not kept
            for ticket in group:
                ticket.done, ticket.error = True, exc
            return
        for ticket in group:
            ticket.done = True
        self.depth += len(rows)
        self.bytes += sum(row[3] for row in rows)
        self.appended += len(rows)
        if self.bytes > self.max_bytes:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        # Walk from the head until enough bytes are freed; one transaction for delete + count.
        excess = self.bytes - self.max_bytes
        freed, count, last_id = 0, 0, None
        for row_id, size in self._db.execute("SELECT id, size FROM spool ORDER BY id"):
            freed, count, last_id = freed + size, count + 1, row_id
            if freed >= excess:
                break
        if last_id is None:
            return
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM spool WHERE id <= ?", (last_id,))
            self._db.execute("UPDATE meta SET value = value + ? WHERE name='dropped'", (count,))
        self.depth -= count
        self.bytes -= freed
        self.dropped += count
        M.spool_dropped.inc(count)
        log.warning("spool full: dropped oldest events",
                    extra={"dropped": count, "dropped_total": self.dropped,
                           "max_bytes": self.max_bytes})

    def peek(self, limit: int) -> list[SpooledMessage]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, key, value, headers FROM spool ORDER BY id LIMIT ?", (limit,)).fetchall()
        return [SpooledMessage(r[0], r[1], r[2], _decode_headers(r[3])) for r in rows]

    def remove(self, ids: list[int]) -> None:
        if not ids:
            return
        with self._lock:
            with self._db:
                self._db.execute("BEGIN")
                removed = 0
                freed = 0
                for row_id in ids:
                    row = self._db.execute("SELECT size FROM spool WHERE id=?", (row_id,)).fetchone()
                    if row:
                        self._db.execute("DELETE FROM spool WHERE id=?", (row_id,))
                        removed, freed = removed + 1, freed + row[0]
            self.depth -= removed
            self.bytes -= freed

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class SpoolWriter:
    """Hands messages to the spool from one background thread, in batches.

    Measured with Kafka down (bench/http_throughput.py): when each of 8 Waitress threads
    committed its own events, GIL hand-offs around every SQLite call stretched a commit to ~10 ms
    and the API managed ~350 req/s. Request threads now only queue and go on; this thread
    commits whatever has gathered, at least every BATCH_WAIT. What waits here is lost in a
    crash, as events in librdkafka's queue are while Kafka is up: at most BATCH_WAIT of them.
    """

    BATCH_WAIT = 0.02  # seconds: the most an event waits before it is on disk
    MAX_PENDING = 100_000  # messages; beyond this (disk stuck) new ones are refused and counted

    def __init__(self, spool: Spool, on_lost) -> None:
        self.spool = spool
        self.on_lost = on_lost  # called with the messages a failed commit could not keep
        self._pending: list = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spool-writer", daemon=True)
        self._thread.start()

    def put(self, messages: list) -> bool:
        with self._lock:
            if len(self._pending) + len(messages) > self.MAX_PENDING:
                return False
            self._pending.extend(messages)
        return True

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _run(self) -> None:
        while not self._stop.wait(self.BATCH_WAIT):
            self._write()

    def _write(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            self.spool.append(batch)
        except Exception:  # disk full, file removed: say so and count every message
            log.exception("spool write failed; events lost", extra={"count": len(batch)})
            self.on_lost(batch)

    def close(self) -> None:
        """Write what is still pending, then stop; safe to call twice."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._write()

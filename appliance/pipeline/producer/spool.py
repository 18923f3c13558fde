"""The API's outbox: every event is written here first and leaves only once it is safe.

SQLite in WAL mode with ``synchronous=NORMAL``: a committed row survives a crash or kill of the
process (not necessarily a power cut). The relay reads rows in id order, hands them to Kafka and
removes each one when the release rule says so (acknowledged by Kafka, or persisted by the
consumer). At ``max_bytes`` the oldest rows are dropped and counted; the count is persisted, so
/kafka/status shows every drop since the spool was created.

Only one thread writes rows (the SpoolWriter's), one reads and removes them (the relay's); a
lock serialises the two on the one connection.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from pathlib import Path
from typing import Callable, NamedTuple

from appliance.core import sensors, sqlite
from appliance.schema.spool import SCHEMA, spool_file

log = logging.getLogger("appliance.spool")

Headers = list[tuple[str, bytes]]
Message = tuple[bytes | None, bytes, Headers | None]  # key, value, headers
MAX_FRESH = 20_000  # rows kept in memory until the relay reads them (~10 MB of events)
_INSERT = "INSERT INTO spool (key, value, headers, size) VALUES "
_CHUNKS = (128, 64, 32, 16, 8, 4, 2, 1)  # rows per INSERT: few distinct statements to prepare


class SpooledMessage(NamedTuple):  # a tuple: made ~1,000 times a relay turn, cheaply
    id: int
    key: bytes | None
    value: bytes
    headers: Headers
    size: int


def _encode_headers(headers: Headers | None) -> str | None:
    # latin-1 maps every byte to one code point, so any header value round-trips through JSON.
    return json.dumps([[k, v.decode("latin-1")] for k, v in headers]) if headers else None


def _decode_headers(text: str | None) -> Headers:
    return [(k, v.encode("latin-1")) for k, v in json.loads(text)] if text else []


class Spool:
    def __init__(self, directory: Path, max_bytes: int, worker: int = 0) -> None:
        """The spool of API process ``worker`` (schema/spool.py: one file each)."""
        self.path = spool_file(directory, worker)
        self.worker = worker
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db = sqlite.connect(self.path)
        self._db.executescript(SCHEMA)
        self._load()

    def adopt(self, other: Path) -> int:
        """Move every row of another spool file (of an API process that no longer runs) to the
        tail of this one, drops counted, then remove the file. Rows leave the other file only
        once copied (atomic per WAL file: a crash between may send some twice; event_id)."""
        with self._lock:
            self._db.execute("ATTACH DATABASE ? AS other", (str(other),))
            try:
                with self._db:
                    self._db.execute("BEGIN")
                    moved = self._db.execute(
                        "INSERT INTO spool (key, value, headers, size) "
                        "SELECT key, value, headers, size FROM other.spool ORDER BY id").rowcount
                    self._db.execute("UPDATE meta SET value = value + COALESCE((SELECT value FROM "
                                     "other.meta WHERE name='dropped'), 0) WHERE name='dropped'")
                    self._db.execute("DELETE FROM other.spool")
            finally:
                self._db.execute("DETACH DATABASE other")
            self._load()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{other}{suffix}").unlink(missing_ok=True)
        log.info("spool of a former API process adopted", extra={"file": str(other), "events": moved})
        return moved

    def _load(self) -> None:
        self.depth, self.bytes, self.last_id = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(MAX(id), 0) FROM spool").fetchone()
        self.dropped = self._db.execute("SELECT value FROM meta WHERE name='dropped'").fetchone()[0]
        self.dropped_below = 0  # every id up to this one was dropped (drops remove a prefix)
        # The newest rows, not read yet, ids consecutive up to last_id (one writer, AUTOINCREMENT
        # within one transaction); empty when they no longer fit: then the database serves.
        self._fresh: collections.deque[SpooledMessage] = collections.deque()

    def append(self, messages: list[Message]) -> None:
        """Store messages at the tail, in order, in one transaction; raise if they were not."""
        rows = [(key, value, _encode_headers(headers), len(value) + len(key or b""))
                for key, value, headers in messages]
        with self._lock:
            with self._db:
                self._db.execute("BEGIN")
                self._insert(rows)
                last_id = self._db.execute("SELECT last_insert_rowid()").fetchone()[0]
            self.depth += len(rows)
            self.bytes += sum(row[3] for row in rows)
            self.last_id = last_id
            self._remember(messages, rows, last_id)
            if self.bytes > self.max_bytes:
                self._drop_oldest()

    def usage(self) -> tuple[int, int, int]:
        """(depth, bytes, dropped) of one moment (an append counts before it drops the oldest)."""
        with self._lock:
            return self.depth, self.bytes, self.dropped

    def _remember(self, messages: list[Message], rows: list[tuple], last_id: int) -> None:
        fresh = self._fresh
        if len(fresh) + len(rows) > MAX_FRESH or (fresh and fresh[-1].id != last_id - len(rows)):
            fresh.clear()  # the relay is far behind: it reads from the database until it is not
        if len(rows) > MAX_FRESH:
            return
        first = last_id - len(rows) + 1
        fresh.extend(SpooledMessage(first + i, key, value, headers or [], row[3])
                     for i, ((key, value, headers), row) in enumerate(zip(messages, rows)))

    def _insert(self, rows: list[tuple]) -> None:
        """Many rows per INSERT statement (executemany steps, and lets go of the GIL, once per
        row), in order: ids follow the order of ``rows``."""
        start = 0
        while start < len(rows):
            size = next(n for n in _CHUNKS if n <= len(rows) - start)
            chunk = rows[start:start + size]
            self._db.execute(_INSERT + ",".join(("(?, ?, ?, ?)",) * size),
                             [value for row in chunk for value in row])
            start += size

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
        self.dropped_below = last_id
        while self._fresh and self._fresh[0].id <= last_id:
            self._fresh.popleft()
        sensors.on_spool_dropped(count)
        log.warning("spool full: dropped oldest events",
                    extra={"dropped": count, "dropped_total": self.dropped,
                           "max_bytes": self.max_bytes})

    def read_from(self, first_id: int, limit: int) -> list[SpooledMessage]:
        """Up to ``limit`` rows with ids from ``first_id`` on, oldest first.

        Rows appended and not read yet come from memory (``_fresh``), the same rows the database
        holds: Python's sqlite3 lets go of the GIL for every row it steps through, and under
        load the relay then waited for the request threads once per row to take it back (the
        pipeline fell behind the requests: event -> row p99 6 s, bench/whole_appliance.py).
        Anything else (a rewind, rows from before this process, a gap) from the database."""
        with self._lock:
            fresh = self._fresh
            while fresh and fresh[0].id < first_id:  # skipped: dropped, or read from the database
                fresh.popleft()
            if fresh and fresh[0].id == first_id:
                return [fresh.popleft() for _ in range(min(limit, len(fresh)))]
            rows = self._db.execute(
                "SELECT id, key, value, headers, size FROM spool WHERE id >= ? ORDER BY id LIMIT ?",
                (first_id, limit)).fetchall()
            while fresh and rows and fresh[0].id <= rows[-1][0]:
                fresh.popleft()
        return [SpooledMessage(r[0], r[1], r[2], _decode_headers(r[3]), r[4]) for r in rows]

    def remove(self, rows: list[tuple[int, int]]) -> None:
        """Delete rows given as (id, size); rows dropped meanwhile are not counted twice."""
        with self._lock:
            rows = [(row_id, size) for row_id, size in rows if row_id > self.dropped_below]
            if not rows:
                return
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("DELETE FROM spool WHERE id BETWEEN ? AND ?",
                                     id_ranges([row_id for row_id, _ in rows]))
            self.depth -= len(rows)
            self.bytes -= sum(size for _, size in rows)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def id_ranges(ids: list[int]) -> list[tuple[int, int]]:
    """The ids as (first, last) runs of consecutive ids: released rows mostly come in runs, and
    one DELETE per run costs a fraction of one per row."""
    runs: list[tuple[int, int]] = []
    for row_id in sorted(set(ids)):
        if runs and row_id == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], row_id)
        else:
            runs.append((row_id, row_id))
    return runs


ACCEPTED, REFUSED, WRITTEN, NOT_WRITTEN = "accepted", "refused", "written", "not written"


class _Ticket:
    """A caller waiting until its rows are committed (EVENT_DURABILITY=sync, POST /kafka/publish)."""

    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done, self.ok = threading.Event(), False


class SpoolWriter:
    """Request threads hand events here; one thread commits them to the spool in groups.

    Measured with Kafka down (bench/http_throughput.py): when each of 8 Waitress threads committed
    its own events, GIL hand-offs around every SQLite call stretched a commit to ~10 ms and the API
    managed ~350 req/s; with one committing thread it managed ~1,600. ``linger`` is how long the
    thread lets events gather before a commit: it bounds what a crash can lose for callers that do
    not wait, and costs callers that wait nothing when 0 (whatever queued during the previous
    commit goes into the next one).
    """

    MAX_PENDING = 100_000  # messages; beyond this (disk stuck) new ones are refused and counted

    def __init__(self, spool: Spool, on_lost: Callable[[list[Message]], None],
                 on_written: Callable[[], None] = lambda: None, linger: float = 0.02) -> None:
        self.spool = spool
        self.on_lost = on_lost  # called with the messages a failed commit could not keep
        self.on_written = on_written
        self.linger = linger
        self._pending: list[Message] = []
        self._tickets: list[_Ticket] = []
        self._cond = threading.Condition()
        self._stopping = False
        self.last_error: str | None = None  # the last failed commit's error, until one succeeds
        self._thread = threading.Thread(target=self._run, name="spool-writer", daemon=True)
        self._thread.start()

    def put(self, messages: list[Message], wait: bool = False, timeout: float = 10.0) -> str:
        """Queue messages: "accepted"; "refused" when too many are pending (the disk is stuck)
        or the writer stopped. With ``wait``, return once they are committed: "written", or
        "not written" (``on_lost`` has counted them)."""
        ticket = _Ticket() if wait else None
        with self._cond:
            if len(self._pending) + len(messages) > self.MAX_PENDING or self._stopping:
                return REFUSED
            self._pending.extend(messages)
            if ticket is not None:
                self._tickets.append(ticket)
            self._cond.notify()
        if ticket is None:
            return ACCEPTED
        return WRITTEN if ticket.done.wait(timeout) and ticket.ok else NOT_WRITTEN

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _run(self) -> None:
        while self._next_group():
            pass

    def _next_group(self) -> bool:
        with self._cond:
            while not self._pending and not self._stopping:
                self._cond.wait()
            if not self._pending:
                return False
        if self.linger:
            time.sleep(self.linger)  # let more gather: fewer, larger commits
        with self._cond:
            batch, self._pending = self._pending, []
            tickets, self._tickets = self._tickets, []
        self._commit(batch, tickets)
        return True

    def _commit(self, batch: list[Message], tickets: list[_Ticket]) -> None:
        ok = True
        try:
            self.spool.append(batch)
            self.last_error = None
        except Exception as exc:  # disk full, file removed: say so and count every message
            ok = False
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("spool write failed; events lost",
                        extra={"count": len(batch), "error": self.last_error})
            self.on_lost(batch)
        for ticket in tickets:
            ticket.ok = ok
            ticket.done.set()
        if ok:
            self.on_written()

    def close(self) -> None:
        """Commit what is still pending, then stop; safe to call twice."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(10)

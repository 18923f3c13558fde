"""End-to-end latency from an HTTP request to its persisted http_responses row.

Real processes: a Tansu broker, `python -m appliance api` and `python -m appliance consumer`
(LOG_LEVEL=WARNING). One keep-alive connection sends GET / at a steady rate, each with a unique
X-Request-ID, and records when it sent it; a poller thread reads the SQLite database through a
read-only connection every few ms (rows newer than the last rowid seen) and records when each
row appears. Three figures per request:

  observed     row seen by the poller - request sent (includes up to one poll interval)
  persisted_at the row's persisted_at (stamped by the consumer when it received the batch,
               before its transaction) - request sent, wall clock: no polling error
  kafka leg    persisted_at - occurred_at (the API stamped occurred_at when it emitted)
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import common

WARMUP_TIMEOUT = 60.0  # seconds for the first row: topic creation + consumer group join
DRAIN_TIMEOUT = 30.0  # seconds to wait for the last rows after sending stops


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s (default 100)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of sending (20)")
    parser.add_argument("--poll-ms", type=float, default=5.0, help="database poll interval (5)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir (process logs)")
    return parser.parse_args()


def _utc(iso: str) -> float:
    """The appliance's timestamps (events.utc_now_iso) as epoch seconds."""
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


class RowWatcher(threading.Thread):
    """Polls http_responses for new rows; ``seen[request_id] = (perf_counter, persisted_at, occurred_at)``."""

    def __init__(self, db_path: Path, interval: float) -> None:
        super().__init__(daemon=True)
        self.db_path, self.interval = db_path, interval
        self.seen: dict[str, tuple[float, str, str]] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        common.wait_until(self.db_path.exists, WARMUP_TIMEOUT, what="the database file")
        uri = f"file:{self.db_path}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
            last = 0
            while not self.stop.is_set():
                try:
                    rows = db.execute("SELECT rowid, request_id, persisted_at, occurred_at "
                                      "FROM http_responses WHERE rowid > ? ORDER BY rowid",
                                      (last,)).fetchall()
                except sqlite3.OperationalError:  # the consumer has not created the table yet
                    rows = []
                now = time.perf_counter()
                for rowid, request_id, persisted_at, occurred_at in rows:
                    self.seen[request_id] = (now, persisted_at, occurred_at)
                    last = rowid
                self.stop.wait(self.interval)


class Sender:
    """GET / on one keep-alive connection; ``sent[request_id] = (perf_counter, wall time)``."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.sent: dict[str, tuple[float, float]] = {}
        self.http_ms: list[float] = []
        self.failures = 0

    def send(self, request_id: str) -> None:
        started, started_wall = time.perf_counter(), time.time()
        self.conn.request("GET", "/", headers={"X-Request-ID": request_id})
        response = self.conn.getresponse()
        response.read()
        self.http_ms.append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            self.failures += 1
        self.sent[request_id] = (started, started_wall)

    def steady(self, prefix: str, rate: float, seconds: float) -> float:
        """Send on a fixed schedule (no catch-up bursts); return the achieved rate."""
        count, begin = int(rate * seconds), time.perf_counter()
        for i in range(count):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self.send(f"{prefix}-{i:06d}")
        return count / (time.perf_counter() - begin)


def warm_up(sender: Sender, watcher: RowWatcher) -> float:
    """Until a first row arrives: the topic exists and the consumer has joined its group."""
    started = time.monotonic()
    for i in range(10_000):
        sender.send(f"warmup-{i}")
        if any(k.startswith("warmup-") for k in watcher.seen):
            return time.monotonic() - started
        if time.monotonic() - started > WARMUP_TIMEOUT:
            break
        time.sleep(0.2)
    raise SystemExit(f"no row persisted within {WARMUP_TIMEOUT}s of warm-up requests")


def latencies(sender: Sender, watcher: RowWatcher, prefix: str) -> dict[str, list[float]]:
    out = {"observed": [], "persisted_at": [], "kafka leg": []}
    for request_id, (sent_at, sent_wall) in sender.sent.items():
        if request_id.startswith(prefix) and request_id in watcher.seen:
            seen_at, persisted_at, occurred_at = watcher.seen[request_id]
            out["observed"].append((seen_at - sent_at) * 1000)
            out["persisted_at"].append((_utc(persisted_at) - sent_wall) * 1000)
            out["kafka leg"].append((_utc(persisted_at) - _utc(occurred_at)) * 1000)
    return out


def report(sender: Sender, watcher: RowWatcher, prefix: str, achieved: float) -> int:
    ours = [k for k in sender.sent if k.startswith(prefix)]
    persisted = sum(1 for k in ours if k in watcher.seen)
    print(f"  sent {len(ours)} at {achieved:.1f} req/s, non-200: {sender.failures}, "
          f"persisted {persisted} ({'equal' if persisted == len(ours) else 'MISSING ROWS'})")
    http_ms = sender.http_ms[-len(ours):]
    rows = [["HTTP response", *(common.percentile(http_ms, q) for q in (50, 95, 99)), max(http_ms)]]
    for name, values in latencies(sender, watcher, prefix).items():
        rows.append([f"e2e {name}", *(common.percentile(values, q) for q in (50, 95, 99)),
                     max(values)])
    print(common.table(["latency (ms)", "p50", "p95", "p99", "max"], rows))
    return 0 if persisted == len(ours) and not sender.failures else 1


def main() -> int:
    args = parse_args()
    print(f"end_to_end_latency: {args.rate:g} req/s for {args.duration:g} s, poll every "
          f"{args.poll_ms:g} ms; broker + api + consumer processes; {common.machine()}")
    with common.session(args.keep) as (tmp, stack):
        broker = common.start_broker(stack, tmp)
        app = common.start_api(stack, tmp, broker.bootstrap, LOG_LEVEL="WARNING")
        app.consumer.start()  # app.stop() (registered by start_api) stops it as well
        watcher = RowWatcher(app.db_path, args.poll_ms / 1000)
        watcher.start()
        stack.callback(watcher.stop.set)
        sender = Sender(app.port)
        stack.callback(sender.conn.close)
        print(f"  warm-up: first row after {warm_up(sender, watcher):.1f} s")
        time.sleep(1)  # let the warm-up trickle finish before the measured stream starts
        achieved = sender.steady("e2e", args.rate, args.duration)
        ours = [k for k in sender.sent if k.startswith("e2e")]
        with contextlib.suppress(AssertionError):
            common.wait_until(lambda: all(k in watcher.seen for k in ours), DRAIN_TIMEOUT, 0.05)
        return report(sender, watcher, "e2e", achieved)


if __name__ == "__main__":
    common.run_main(main)

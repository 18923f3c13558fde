"""Consumer events/s persisted, as a ratio to raw sqlite3 executemany of the same rows.

Produces N well-formed events (http_request/http_response pairs, as the API makes them) to a
fresh topic on a real Tansu broker once, then alternates, each on a fresh database created by
the consumer's own store (identical schema and indexes):

  raw sqlite3   the baseline: the rows from persist.classify, pre-built, inserted with
                sqlite3 executemany (INSERT OR IGNORE), 500 events per transaction
  classify      persist.classify alone (JSON parse + validation), no database: where time goes
  writer        BatchWriter.write on in-memory messages: classify + one prepared INSERT OR
                IGNORE executemany per table, one transaction per 500 -- the consumer's
                database path without Kafka
  consumer      the real EventConsumer driven in-process by step() until every event is
                persisted: Kafka fetch + write + synchronous offset commit per batch;
                timed from partition assignment (the group join is excluded)

Each run's ratio is its rate over the mean of the raw runs right before and after it.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import common  # sets sys.path for appliance and tests/procs.py
from confluent_kafka import Producer

from appliance.core.config import Settings
from appliance.core.ids import new_id
from appliance.core.kafka import ensure_topic
from appliance.core.timefmt import utc_now_iso
from appliance.pipeline.consumer import persist, store
from appliance.pipeline.consumer.consumer import BATCH_SIZE, EventConsumer
from appliance.pipeline.consumer.writer import BatchWriter
from appliance.schema import events

BASE = "raw sqlite3"


class Message:
    """Just enough of confluent_kafka.Message for persist.classify and BatchWriter.write."""

    def __init__(self, value: bytes, offset: int) -> None:
        self._value, self._offset = value, offset

    def value(self) -> bytes:
        return self._value

    def topic(self) -> str:
        return "bench"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def error(self):
        return None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000, help="events produced (50000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir")
    return parser.parse_args()


def make_events(count: int) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs shaped like the API's: one request and one response per request id."""
    out = []
    for i in range(count // 2):
        rid = new_id()
        common_fields = {"method": "GET", "route": "/", "path": "/", "query": "",
                         "user_ip": "203.0.113.45", "proxy_chain": "203.0.113.45, 198.51.100.23",
                         "user_agent": "bench/1.0"}
        request = events.make_event(events.HTTP_REQUEST, rid, "bench-host", {**common_fields, "bytes": 0})
        response = events.make_event(events.HTTP_RESPONSE, rid, "bench-host", {
            **common_fields, "status": 200, "duration_ms": 0.41 + i % 7, "bytes": 212})
        out += [(rid.encode(), events.encode(request)), (rid.encode(), events.encode(response))]
    return out


def produce(bootstrap: str, topic: str, pairs: list[tuple[bytes, bytes]]) -> float:
    failed = []
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all",
                         "on_delivery": lambda err, _msg: err and failed.append(err)})
    started = time.perf_counter()
    for key, value in pairs:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(60) or failed:
        raise SystemExit(f"produce failed: {len(failed)} errors, e.g. {failed[:1]}")
    return len(pairs) / (time.perf_counter() - started)


def fresh_db(tmp: Path, name: str) -> Path:
    path = tmp / f"{name}.db"
    schema = store.Store(path)
    schema.open()  # the schema and indexes exactly as the consumer creates them
    schema.close()
    return path


def count_rows(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return sum(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                   for t in ("http_requests", "http_responses"))


def raw_batches(messages: list[Message]) -> list[list[tuple[str, list[tuple]]]]:
    """Per 500 events: one (INSERT OR IGNORE sql, rows) per table, built outside the timing."""
    batches = []
    for start in range(0, len(messages), BATCH_SIZE):
        batch = persist.classify(messages[start:start + BATCH_SIZE], utc_now_iso())
        statements = []
        for model, rows in batch.rows.items():
            columns = list(rows[0])
            sql = (f"INSERT OR IGNORE INTO {model._meta.table_name} ({', '.join(columns)}) "
                   f"VALUES ({', '.join('?' * len(columns))})")
            statements.append((sql, [tuple(r[c] for c in columns) for r in rows]))
        batches.append(statements)
    return batches


def run_raw(path: Path, batches) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=wal", "synchronous=normal", "busy_timeout=5000"):
        db.execute(f"PRAGMA {pragma}")  # the consumer's pragmas (appliance/audit_db.py)
    started = time.perf_counter()
    for statements in batches:
        db.execute("BEGIN")
        for sql, rows in statements:
            db.executemany(sql, rows)
        db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return elapsed


def run_classify(messages: list[Message]) -> float:
    started = time.perf_counter()
    for start in range(0, len(messages), BATCH_SIZE):
        persist.classify(messages[start:start + BATCH_SIZE], utc_now_iso())
    return time.perf_counter() - started


def settings_for(bootstrap: str, topic: str, db_path: Path) -> Settings:
    return Settings(kafka_brokers=bootstrap, kafka_topic_events=topic, db_path=db_path,
                    data_dir=db_path.parent, kafka_consumer_group=f"bench-{uuid.uuid4().hex[:8]}")


def run_writer(settings: Settings, messages: list[Message]) -> float:
    writer = BatchWriter(settings)
    try:
        writer.store.open()
        started = time.perf_counter()
        for start in range(0, len(messages), BATCH_SIZE):
            if not writer.write(messages[start:start + BATCH_SIZE]):
                raise SystemExit(f"the database refused a batch: {writer.last_db_error}")
        return time.perf_counter() - started
    finally:
        writer.close()


def run_consumer(settings: Settings, total: int, timeout: float = 120) -> float:
    """Seconds from partition assignment until every event is persisted."""
    writer = BatchWriter(settings)
    consumer = EventConsumer(settings, writer, threading.Event())
    try:
        writer.store.open()
        assigned: list[float] = []
        consumer.consumer.subscribe([settings.kafka_topic_events],
                                    on_assign=lambda *_: assigned.append(time.perf_counter()))
        deadline, steps = time.monotonic() + timeout, 0
        while sum(writer.persisted.values()) < total:
            if time.monotonic() > deadline:
                raise SystemExit(f"consumer persisted {writer.persisted} of {total} in {timeout}s")
            steps += 1 if consumer.step() else 0
        print(f"         consumer: {steps} non-empty batches, mean {total / steps:.0f} events each")
        return time.perf_counter() - assigned[0]
    finally:
        consumer.close_client()
        writer.close()


def main() -> int:
    args = parse_args()
    total = args.events // 2 * 2
    print(f"consumer_throughput: {total} events, batches of {BATCH_SIZE}, consumer in-process; "
          f"{common.machine()}")
    with common.session(args.keep) as (tmp, stack):
        broker = common.start_broker(stack, tmp)
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        pairs = make_events(total)
        ensure_topic(Producer({"bootstrap.servers": broker.bootstrap}),
                     settings_for(broker.bootstrap, topic, tmp / "x.db"), timeout=10)
        print(f"  produced {total} events at {produce(broker.bootstrap, topic, pairs):,.0f} events/s "
              f"(confluent_kafka Producer, linger.ms=20)")
        messages = [Message(value, i) for i, (_key, value) in enumerate(pairs)]
        batches = raw_batches(messages)
        runs = measure(tmp, broker.bootstrap, topic, messages, batches, args.rounds, total)
        print()
        print(summarize(runs, total))
    return 0


def measure(tmp, bootstrap, topic, messages, batches, rounds, total) -> list[tuple[str, float]]:
    variants = {
        "classify": lambda db: run_classify(messages),
        "writer": lambda db: run_writer(settings_for(bootstrap, topic, db), messages),
        "consumer": lambda db: run_consumer(settings_for(bootstrap, topic, db), total),
    }
    order = [n for _ in range(rounds) for v in variants for n in (BASE, v)] + [BASE]
    runs = []
    for i, name in enumerate(order, 1):
        db = fresh_db(tmp, f"run{i}")
        elapsed = run_raw(db, batches) if name == BASE else variants[name](db)
        if name != "classify" and count_rows(db) != total:
            raise SystemExit(f"{name}: {count_rows(db)} rows persisted, expected {total}")
        for suffix in ("", "-wal", "-shm"):  # 50k rows are ~25 MB: do not keep them around
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        runs.append((name, elapsed))
        print(f"  [{i:2}/{len(order)}] {name:12} {total / elapsed:10,.0f} events/s  ({elapsed:.2f} s)",
              flush=True)
    return runs


def summarize(runs: list[tuple[str, float]], total: int) -> str:
    base = [total / t for n, t in runs if n == BASE]
    rows = [[BASE, common.median(base), "1 (baseline)", f"{min(base):,.0f}-{max(base):,.0f}"]]
    for name in dict.fromkeys(n for n, _ in runs if n != BASE):
        rates, ratios = [], []
        for i, (n, elapsed) in enumerate(runs):
            if n == name:
                neighbours = (total / runs[i - 1][1] + total / runs[i + 1][1]) / 2
                rates.append(total / elapsed)
                ratios.append(total / elapsed / neighbours)
        rows.append([name, common.median(rates),
                     f"{common.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})",
                     f"{min(rates):,.0f}-{max(rates):,.0f}"])
    return common.table(["path", "events/s", "ratio to raw (min-max)", "events/s range"], rows)


if __name__ == "__main__":
    common.run_main(main)

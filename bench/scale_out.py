"""Persisted events/s into PostgreSQL with one and two consumers, against SQLite, in one run;
and how long a consumer group takes to move partitions when a consumer joins or dies.

Produces --events well-formed events (http_request/http_response pairs, as the API makes them)
to a topic of 4 partitions on a real Tansu broker once. Then, alternating for --rounds rounds,
each on a fresh database and a fresh consumer group that reads the topic from the start:

  sqlite          one `simple-time-service consumer` process into its own SQLite file
  postgresql x1   one consumer process into a fresh PostgreSQL database (throwaway cluster)
  postgresql x2   two consumer processes (own DATA_DIRs, one group) into one database

Rate = rows / (time of the last row - time of the first row): the group join is left out.
Rebalance: with two consumers draining, the second is started late (join) and then one is
killed with SIGKILL (its session must expire first); each is timed until the survivors' own
reports show every partition assigned.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

import common  # sets sys.path for appliance and tests/procs.py
from confluent_kafka import Producer
from procs import Postgres, Process, clean_environment, postgres_rows, wait_until

from appliance.core.config import Settings
from appliance.core.kafka import ensure_topic
from appliance.schema import events

PARTITIONS = 4


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="events on the topic (100,000)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the three runs (2)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir")
    return parser.parse_args()


def fill_topic(bootstrap: str, topic: str, total: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.num.messages": 10_000})
    ensure_topic(producer, Settings(kafka_brokers=bootstrap, kafka_topic_events=topic,
                                    kafka_partitions=PARTITIONS), 30)
    for i in range(total // 2):
        request_id = f"bench-{i}"
        common_fields = {"method": "GET", "route": "/", "path": f"/p/{i % 97}", "query": "",
                         "user_ip": f"10.0.{i % 250}.{i % 199}", "proxy_chain": "", "user_agent": "bench"}
        for kind, extra in ((events.HTTP_REQUEST, {"bytes": 0}),
                            (events.HTTP_RESPONSE, {"status": 200, "bytes": 10, "duration_ms": 1.5})):
            event = events.make_event(kind, request_id, "bench", {**common_fields, **extra}, None)
            producer.produce(topic, events.encode(event), key=request_id.encode())
        if i % 5000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0, "events left unsent"


class Run:
    """Consumer processes of one group into one database, and its row count over time."""

    def __init__(self, tmp: Path, name: str, bootstrap: str, topic: str, url: str | None) -> None:
        self.tmp, self.url = tmp / name, url
        self.tmp.mkdir()
        self.env = {"KAFKA_BROKERS": bootstrap, "KAFKA_TOPIC_EVENTS": topic, "LOG_LEVEL": "WARNING",
                    "KAFKA_CONSUMER_GROUP": f"bench-{uuid.uuid4().hex[:8]}",
                    **({"DATABASE_URL": url} if url else {})}
        self.consumers: list[Process] = []

    def start_consumer(self) -> Process:
        number = len(self.consumers)
        data_dir = self.tmp / f"c{number}"
        env = clean_environment({**self.env, "DATA_DIR": str(data_dir),
                                 **({} if self.url else {"DB_PATH": str(self.tmp / "events.db")})})
        consumer = Process([sys.executable, "-m", "appliance", "consumer"], env,
                           self.tmp / f"consumer{number}.log").start()
        consumer.data_dir = data_dir
        self.consumers.append(consumer)
        return consumer

    def rows(self) -> int:
        sql = "SELECT (SELECT COUNT(*) FROM http_requests) + (SELECT COUNT(*) FROM http_responses)"
        if self.url:
            found = postgres_rows(self.url, sql)
            return found[0][0] if found else 0
        path = self.tmp / "events.db"
        if not path.exists():
            return 0
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
                return db.execute(sql).fetchone()[0]
        except sqlite3.OperationalError:
            return 0

    def stop(self) -> None:
        for consumer in self.consumers:
            consumer.stop()


def assigned(consumer: Process) -> int:
    try:
        report = json.loads((consumer.data_dir / "consumer-state.json").read_text())
    except (OSError, ValueError):
        return 0
    return len(report.get("assigned_partitions", []))


def drain(run: Run, total: int, consumers: int, timeout: float = 600) -> float:
    """Events/s from the first row to the last."""
    for _ in range(consumers):
        run.start_consumer()
    first_at, deadline = None, time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = run.rows()
        if rows and first_at is None:
            first_at, first_rows = time.monotonic(), rows
        if rows >= total:
            return (rows - first_rows) / max(time.monotonic() - first_at, 1e-9)
        time.sleep(0.1)
    raise RuntimeError(f"{run.rows()} of {total} rows after {timeout} s")


def rebalance(run: Run) -> dict[str, float]:
    """Seconds until the partitions are spread after a join, and whole after a SIGKILL."""
    first = run.start_consumer()
    wait_until(lambda: assigned(first) == PARTITIONS, 60, 0.05, what="the first consumer assigned")
    started = time.monotonic()
    second = run.start_consumer()
    wait_until(lambda: assigned(first) + assigned(second) == PARTITIONS and assigned(second) > 0,
               60, 0.05, what="partitions shared")
    joined = time.monotonic() - started
    time.sleep(2)
    killed = time.monotonic()
    first.kill()
    wait_until(lambda: assigned(second) == PARTITIONS, 120, 0.05, what="the survivor holding all")
    return {"join": joined, "kill -9": time.monotonic() - killed}


def main() -> int:
    args = parse_args()
    print(f"scale_out: {args.events:,} events, {PARTITIONS} partitions; {common.machine()}", flush=True)
    with common.session(args.keep) as (tmp, stack):
        broker = common.start_broker(stack, tmp)
        # Not under the scratch dir: run as the postgres user, the server could not enter it.
        pg_dir = Path(tempfile.mkdtemp(prefix="sts-bench-postgres-"))
        stack.callback(shutil.rmtree, pg_dir, True)
        postgres = Postgres(pg_dir)
        postgres.start()
        stack.callback(postgres.stop)
        topic = f"scale-{uuid.uuid4().hex[:6]}"
        fill_topic(broker.bootstrap, topic, args.events)
        total = args.events // 2 * 2
        rates: dict[str, list[float]] = {}
        for round_number in range(args.rounds):
            for name, engine, consumers in (("sqlite", None, 1), ("postgresql x1", "pg", 1),
                                            ("postgresql x2", "pg", 2)):
                label = f"r{round_number}-{name.replace(' ', '')}"
                url = postgres.create_database(f"b_{uuid.uuid4().hex[:8]}") if engine else None
                run = Run(tmp, label, broker.bootstrap, topic, url)
                try:
                    rates.setdefault(name, []).append(drain(run, total, consumers))
                finally:
                    run.stop()
                print(f"  {name:<14} {rates[name][-1]:>9,.0f} events/s", flush=True)
        base = common.median(rates["sqlite"])
        print()
        print(common.table(["store", "events/s (median)", "runs", "ratio to sqlite"],
                           [[name, f"{common.median(r):,.0f}", " / ".join(f"{x:,.0f}" for x in r),
                             f"{common.median(r) / base:.2f}"] for name, r in rates.items()]))
        run = Run(tmp, "rebalance", broker.bootstrap, topic, postgres.create_database("b_rebalance"))
        try:
            moved = rebalance(run)
        finally:
            run.stop()
        print(f"\n  rebalance: a consumer joins {moved['join']:.1f} s, one is killed -9 "
              f"{moved['kill -9']:.1f} s (until the survivor holds every partition)")
    return 0


if __name__ == "__main__":
    common.run_main(main)

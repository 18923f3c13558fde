"""The audit database at scale: ten million events, filled through the project's own models.

Fills a fresh database with --events events (request/response pairs as the API makes them,
spread over --days days, from a pool of clients, routes and paths with skewed popularity),
inserted the way the consumer inserts (persist.classify, then one INSERT OR IGNORE executemany
per table, 500 events per transaction). Then reports:

  bytes on disk per event
  insert rate over the first and the last --sample events (ratio last / first)
  p50 and p99 of each /events filter (through the real API, read-only, random values from the
      data) over the last 24 h, and of /events/stats over the last 24 h
  prune rate: events deleted per second by the consumer's maintenance under DB_MAX_MB

Goals (issue 12): filters p99 <= 50 ms, stats over 24 h <= 2 s, insert rate at the end >= 0.8 of
the empty database's.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

import common
from dataset import Message  # the consumer's view of a Kafka message, as in the tests

from appliance.core.config import Settings
from appliance.core.database_url import DatabaseUrl
from appliance.core.timefmt import iso
from appliance.core.tracing import TimeOrderedIds
from appliance.pipeline.consumer import persist, store
from appliance.pipeline.consumer.maintenance import Maintenance, used_bytes
from appliance.schema import events

BATCH = 500
TRACE_IDS = TimeOrderedIds()  # trace ids as the appliance makes them (tracing on)
RANDOM_TRACE_IDS = False  # --random-trace-ids: as callers' traceparent headers bring them


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000, help="events to fill (10,000,000)")
    parser.add_argument("--days", type=float, default=7.0, help="days they are spread over (7)")
    parser.add_argument("--sample", type=int, default=100_000,
                        help="events timed at the start and the end of the fill (100,000)")
    parser.add_argument("--queries", type=int, default=60, help="requests per filter (60)")
    parser.add_argument("--db", help="fill this file (kept), or reuse it if it is already full")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir")
    parser.add_argument("--random-trace-ids", action="store_true",
                        help="every event's trace id random, as when every caller sends a "
                             "traceparent, instead of the time-ordered ones the appliance makes")
    parser.add_argument("--random-ids", action="store_true",
                        help="event and request ids as random UUIDs (version 4, as the appliance "
                             "made them before) "
                             "instead of the appliance's time-ordered version 7, to compare")
    return parser.parse_args()


class Population:
    """Who calls what: a few clients and routes account for most of the traffic."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.clients = [f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}" for i in range(20_000)]
        self.clients += [f"2001:db8::{i:x}" for i in range(2_000)]
        self.routes = ["/", "/api/items", "/api/items/<id>", "/api/users/<id>", "/healthz",
                       "/login", "/static/<path>", "unmatched"]
        self.chains = ["", "", "", "198.51.100.1", "198.51.100.1, 198.51.100.2"]

    def skewed(self, items: list):
        return items[min(int(self.rng.paretovariate(1.2)) - 1, len(items) - 1)]

    def exchange(self, at: datetime) -> list[dict]:
        route = self.skewed(self.routes)
        path = (route.replace("<id>", str(self.rng.randrange(5000)))
                .replace("<path>", f"f{self.rng.randrange(200)}.js")
                .replace("unmatched", f"/no/such/page/{self.rng.randrange(100)}"))
        status = self.rng.choices((200, 201, 304, 404, 500, 503), (80, 5, 5, 7, 2, 1))[0]
        common_fields = {"method": self.rng.choice(("GET", "GET", "GET", "POST")), "route": route,
                         "path": path, "query": "", "user_ip": self.skewed(self.clients),
                         "proxy_chain": self.rng.choice(self.chains), "user_agent": "bench/1.0"}
        trace_id = (f"{self.rng.getrandbits(128):032x}" if RANDOM_TRACE_IDS
                    else f"{TRACE_IDS.generate_trace_id():032x}")
        request_id = events.new_id()
        made = [events.make_event(events.HTTP_REQUEST, request_id, "bench",
                                  {**common_fields, "bytes": 0}, trace_id),
                events.make_event(events.HTTP_RESPONSE, request_id, "bench", {
                    **common_fields, "status": status, "bytes": 180,
                    "duration_ms": round(self.rng.lognormvariate(1.0, 0.8), 3)}, trace_id)]
        for e in made:
            e["occurred_at"] = iso(at)
        return made


def fill(path, total: int, days: float, sample: int) -> dict:
    people, target = Population(), store.Store(DatabaseUrl("sqlite", path=path))
    db = target.open()
    start = datetime.now(timezone.utc) - timedelta(days=days)
    step = timedelta(days=days) / max(total // 2, 1)
    rates, written, sample_started = {}, 0, time.perf_counter()
    while written < total:
        made = []
        for _ in range(BATCH // 2):
            made += people.exchange(start + step * (written // 2 + len(made) // 2))
        messages = [Message(events.encode(e), written + i) for i, e in enumerate(made)]
        batch = persist.classify(messages, iso(datetime.now(timezone.utc)))
        timed_from = time.perf_counter()
        with db.atomic():
            for model, rows in batch.rows.items():
                store.insert_ignore(model, rows)
        elapsed = time.perf_counter() - timed_from
        for edge in ("first", "last"):
            inside = written < sample if edge == "first" else written >= total - sample
            if inside:
                rates.setdefault(edge, [0, 0.0])
                rates[edge][0] += len(made)
                rates[edge][1] += elapsed
        written += len(made)
        if written % 1_000_000 < BATCH:
            print(f"  filled {written:,} events ({written / (time.perf_counter() - sample_started):,.0f}/s)",
                  flush=True)
    size = path.stat().st_size + path.with_name(path.name + "-wal").stat().st_size
    target.close()
    return {"events": written, "bytes_per_event": size / written,
            "insert_first": rates["first"][0] / rates["first"][1],
            "insert_last": rates["last"][0] / rates["last"][1]}


def filter_queries(path, now: datetime) -> dict[str, list[str]]:
    """Real values from the data for each filter, as query strings, over the last 24 h."""
    import sqlite3
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    after = iso(now - timedelta(hours=24))
    def pick(sql: str) -> list:
        return [r[0] for r in db.execute(sql + " LIMIT 200")]
    values = {
        "user_ip": pick("SELECT user_ip FROM http_responses ORDER BY RANDOM()"),
        "user_ip CIDR": [ip.rsplit(".", 1)[0] + ".0/24" for ip in pick(
            "SELECT user_ip FROM http_responses WHERE user_ip LIKE '10.%' ORDER BY RANDOM()")],
        "path": [p[:8] for p in pick("SELECT path FROM http_responses ORDER BY RANDOM()")],
        "route": pick("SELECT DISTINCT route FROM http_responses"),
        "method": ["GET", "POST"],
        "status": ["200", "404", "500", "5xx", "2xx", "3xx"],
        "request_id": pick("SELECT request_id FROM http_responses ORDER BY RANDOM()"),
        "trace_id": pick("SELECT trace_id FROM http_responses ORDER BY RANDOM()"),
    }
    db.close()
    return {name: [urllib.parse.urlencode({name.split()[0]: v, "after": after}) for v in vs]
            for name, vs in values.items()}


def timed_get(port: int, query: str) -> float:
    started = time.perf_counter()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{query}", headers=common.AUTHORIZATION)
    with urllib.request.urlopen(request, timeout=120) as response:
        json.loads(response.read())
    return (time.perf_counter() - started) * 1000


def measure_queries(stack, tmp, path, count: int) -> dict:
    app = common.start_api(stack, tmp / "api", "", DB_PATH=str(path), LOG_LEVEL="WARNING",
                           RATE_LIMIT_READS="0")  # the bench times the reads, back to back
    now, rng, results = datetime.now(timezone.utc), random.Random(3), {}
    for name, queries in filter_queries(path, now).items():
        times = [timed_get(app.port, "/events?" + rng.choice(queries)) for _ in range(count)]
        results[name] = (common.percentile(times, 50), common.percentile(times, 99))
        print(f"  /events {name:12} p50 {results[name][0]:7.1f} ms  "
              f"p99 {results[name][1]:7.1f} ms", flush=True)
    window = urllib.parse.urlencode({"since": iso(now - timedelta(hours=24)), "until": iso(now)})
    times = [timed_get(app.port, "/events/stats?" + window) for _ in range(5)]
    results["stats 24 h"] = (common.percentile(times, 50), max(times))
    stats = results["stats 24 h"]
    print(f"  /events/stats 24 h  p50 {stats[0]:7.0f} ms  max {stats[1]:7.0f} ms")
    app.stop()
    return results


def measure_prune(path, rows: int) -> float:
    keeper = store.Store(DatabaseUrl("sqlite", path=path))
    db = keeper.open()
    limit_mb = max(1, int(used_bytes(db) / 2**20 * 0.97))  # ~3 % over the limit
    settings = Settings(data_dir=path.parent, db_path=path, db_max_mb=limit_mb, retention_days=0)
    maintenance = Maintenance(settings, keeper)
    deleted, started = 0, time.perf_counter()
    while deleted < rows and time.perf_counter() - started < 300:
        before = sum(maintenance.pruned.values())
        if not maintenance.step():
            break
        deleted += sum(maintenance.pruned.values()) - before
    elapsed = time.perf_counter() - started
    keeper.close()
    return deleted / elapsed if elapsed else 0.0


def main() -> int:
    args = parse_args()
    global RANDOM_TRACE_IDS
    RANDOM_TRACE_IDS = args.random_trace_ids
    if args.random_ids:
        events.new_id = lambda: str(uuid.uuid4())
    ids = "random event ids (v4)" if args.random_ids else "time-ordered event ids (v7)"
    ids += ", random trace ids" if args.random_trace_ids else ", trace ids as the appliance makes them"
    print(f"audit_scale: {args.events:,} events over {args.days:g} days; ids: {ids}; "
          f"{common.machine()}", flush=True)
    with common.session(args.keep) as (tmp, stack):
        from pathlib import Path
        path = Path(args.db) if args.db else tmp / "events.db"
        if path.exists():
            print(f"  reusing {path} ({path.stat().st_size / 2**30:.2f} GiB)")
            filled = None
        else:
            filled = fill(path, args.events, args.days, args.sample)
            print(f"\n  bytes per event on disk: {filled['bytes_per_event']:.0f}")
            print(f"  insert rate: empty {filled['insert_first']:,.0f} events/s, at "
                  f"{filled['events']:,}: {filled['insert_last']:,.0f} events/s "
                  f"(ratio {filled['insert_last'] / filled['insert_first']:.2f})")
        measure_queries(stack, tmp, path, args.queries)
        rate = measure_prune(path, 100_000)
        print(f"  prune: {rate:,.0f} events/s deleted under DB_MAX_MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

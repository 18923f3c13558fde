"""Soak: the whole appliance under `up` (embedded broker) with steady load for minutes.

Starts `simple-time-service up` with KAFKA_BROKERS=embedded, as the README does, runs wrk
(closed loop: each of --connections sends its next request when the last one is answered, so
the rate is the highest this machine sustains) for --duration seconds, and prints every --every
seconds: requests answered (the API's own counter), rows persisted, the backlog between the two,
the consumer lag Kafka reports, the spool depth, each process's RSS and the broker recycles.

At the end it waits until the backlog is gone (or --settle seconds pass) and prints answered vs
persisted vs spooled vs dropped, duplicates, and the lag and broker RSS over time. Exit status 1
when a request answered is missing from the database or a row is duplicated.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time

import common

from appliance import supervise
from appliance.agent.processes import rss_mb
from appliance.core.config import Settings

PROGRAMS = ("api", "consumer", "agent", "broker")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0,
                        help="seconds of load (600; 3600 for the hour-long soak)")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples (30)")
    parser.add_argument("--connections", type=int, default=4, help="connections (4)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="requests/s in all (paced Python client); 0: wrk, as fast as answered")
    parser.add_argument("--settle", type=float, default=180.0,
                        help="seconds to wait for the backlog to drain after the load (180)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra appliance setting, e.g. --env EMBEDDED_BROKER_MAX_MB=128")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir (process logs)")
    return parser.parse_args()



class Sampler:
    """One line per sample; remembers what the summary needs."""

    def __init__(self, app: common.Appliance, control) -> None:
        self.app, self.control = app, control
        self.started = time.monotonic()
        self.broker_pids: list[int] = []
        self.rows: list[dict] = []

    def persisted(self) -> int:
        """Rows, plus those DB_MAX_MB or RETENTION_DAYS deleted since (the soak's traffic is
        all GET /: every pruned response row was one of its requests)."""
        result = self.app.rows("SELECT COUNT(*) FROM http_responses WHERE route = '/'")
        return (result[0][0] if result else 0) + pruned(self.app.port)

    def sample(self) -> dict:
        pids = {info["name"]: info["pid"] for info in self.control.getAllProcessInfo()}
        if pids.get("broker") and pids["broker"] not in self.broker_pids:
            self.broker_pids.append(pids["broker"])
        kafka = common.http_json(self.app.port, "/kafka/status")
        status = common.http_json(self.app.port, "/status").get("components", {})
        count, stored = common.answered(self.app.port, timeout=5), self.persisted()
        row = {"t": time.monotonic() - self.started, "answered": count, "persisted": stored,
               "backlog": count - stored,
               "lag": status.get("kafka", {}).get("data", {}).get("lag_total", -1),
               "spool": kafka.get("spool_depth", -1),
               "recycles": max(0, len(self.broker_pids) - 1),
               **{f"{name} MB": rss_mb(pids.get(name) or 0) for name in PROGRAMS}}
        # WEB_PROCESSES > 1: the API's parent is small; its largest worker is the figure.
        row["api MB"] = max([row["api MB"], *(rss_mb(p) for p in common.children(pids.get("api") or 0))])
        self.rows.append(row)
        return row

    def print_header(self) -> None:
        print("  ".join(f"{h:>10}" for h in self.columns()), flush=True)

    def print_row(self, row: dict) -> None:
        print("  ".join(f"{row[h]:>10,.0f}" if h != "t" else f"{row[h]:>10.0f}"
                        for h in self.columns()), flush=True)

    @staticmethod
    def columns() -> list[str]:
        return ["t", "answered", "persisted", "backlog", "lag", "spool", "recycles",
                *(f"{p} MB" for p in PROGRAMS)]


PRUNED_RE = re.compile(r'^events_pruned_total\{table="http_responses"\} (\S+)$', re.M)


def pruned(port: int) -> int:
    return max(0, common.metric_count(port, PRUNED_RE, timeout=5))


def start_load(app: common.Appliance, args: argparse.Namespace, tmp) -> subprocess.Popen:
    if args.rate:
        code = (f"import sys; sys.path.insert(0, {str(common.REPO / 'bench')!r}); import common; "
                f"common.paced_load({app.port}, {args.rate}, {args.duration}, {args.connections}, "
                f"{str(tmp / 'wrk.txt')!r})")
        return subprocess.Popen([sys.executable, "-c", code])
    if not common.have_wrk():
        sys.exit("soak: needs wrk (apt-get install wrk): a Python load generator would take "
                 "the cores the appliance needs")
    out = open(tmp / "wrk.txt", "w")
    return subprocess.Popen(["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration:g}s",
                             f"http://127.0.0.1:{app.port}/"], stdout=out, stderr=subprocess.STDOUT)


def wrk_requests(tmp) -> tuple[int, int]:
    text = (tmp / "wrk.txt").read_text()
    total = re.search(r"(\d+) requests in", text)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return (int(total.group(1)) if total else -1), (int(bad.group(1)) if bad else 0)


def summary(app: common.Appliance, sampler: Sampler, tmp) -> int:
    sent, non_2xx = wrk_requests(tmp)
    count = common.answered(app.port, timeout=5)
    (rows, distinct), = app.rows(
        "SELECT COUNT(*), COUNT(DISTINCT request_id) FROM http_responses WHERE route = '/'")
    gone = pruned(app.port)
    kafka = common.http_json(app.port, "/kafka/status")
    first = sampler.rows[0]["t"] if sampler.rows else 0
    print(f"\nwrk answered {sent:,} ({non_2xx:,} non-2xx); the API counted {count:,} answered; "
          f"{rows:,} rows ({rows - distinct:,} duplicates) + {gone:,} pruned (DB_MAX_MB, "
          f"RETENTION_DAYS); backlog {count - rows - gone:,}")
    print(f"spool: {kafka.get('spooled', 0):,} events spooled while Kafka was down or paused, "
          f"depth now {kafka.get('spool_depth', 0):,}, dropped {kafka.get('dropped', 0):,}; "
          f"lost {kafka.get('lost', 0):,}")
    if "workers" in kafka:  # WEB_PROCESSES > 1: each API process's own view
        print(f"api workers: {kafka['workers']}; not answering: {kafka['workers_unreachable']}")
    print(f"broker recycles: {max(0, len(sampler.broker_pids) - 1)}")
    lags = [r["lag"] for r in sampler.rows if r["t"] >= first]
    backlogs = [r["backlog"] for r in sampler.rows]
    print(f"lag over time: {', '.join(f'{v:,}' for v in lags)}")
    print(f"backlog over time: {', '.join(f'{v:,}' for v in backlogs)}")
    broker_rss = ", ".join(f"{r['broker MB']:.0f}" for r in sampler.rows)
    print(f"broker RSS MB over time: {broker_rss}")
    return 0 if rows + gone == count and rows == distinct else 1


def main() -> int:
    args = parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    print(f"soak: {args.duration:g} s, wrk -t1 -c{args.connections}, {extra or 'defaults'}; "
          f"{common.machine()}", flush=True)
    with common.session(args.keep) as (tmp, stack):
        common.require_broker_binary()
        app = common.Appliance(tmp, "embedded", EMBEDDED_BROKER_PORT=str(common.free_port()),
                               **extra)
        up = common.Process([sys.executable, "-m", "appliance", "up"], app.env, tmp / "up.log")
        stack.callback(up.stop, 90)
        up.start()
        control = supervise.client(Settings(data_dir=app.data_dir)).supervisor
        common.wait_until(lambda: common.http_json(app.port, "/").get("kafka_status") == "UP", 60, 0.5,
                          "Kafka UP")
        common.wait_until(lambda: common.http_json(app.port, "/status").get("components", {})
                          .get("process.consumer", {}).get("state") == "UP", 60, 0.5,
                          "consumer assigned")
        sampler = Sampler(app, control)
        load = start_load(app, args, tmp)
        stack.callback(load.kill)
        sampler.print_header()
        next_at = time.monotonic()
        while load.poll() is None:
            if time.monotonic() >= next_at:
                sampler.print_row(sampler.sample())
                next_at += args.every
            time.sleep(0.5)
        print(f"-- load stopped; waiting up to {args.settle:g} s for the backlog", flush=True)
        deadline = time.monotonic() + args.settle
        while time.monotonic() < deadline:
            row = sampler.sample()
            if row["backlog"] <= 0:
                break
            time.sleep(2)
        sampler.print_row(sampler.sample())
        return summary(app, sampler, tmp)


if __name__ == "__main__":
    common.run_main(main)

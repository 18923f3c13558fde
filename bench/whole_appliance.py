"""The appliance as users run it, against a bare Waitress app measured alternately in the same run.

(Not bench/appliance.py: run as `python bench/X.py`, bench/ comes first on sys.path, and a
bench/appliance.py would be imported for the appliance package by anything that imports it
before bench/common.py has put the repository first.)

Targets, all running at once (an idle one costs next to nothing):

  bare waitress   the baseline: a constant JSON from a trivial WSGI app (bench/common.py)
  appliance up    `simple-time-service up` with KAFKA_BROKERS=embedded and nothing else set, as
                  the README starts it: supervisord, broker, consumer, agent, api, LOG_LEVEL=INFO
                  (the access log goes through supervisord to a file)
  api default     `python -m appliance api` + `consumer` in the default configuration
                  (LOG_LEVEL=INFO, access log to a file) with a Tansu broker as an external Kafka
  api kafka-down  the same API with KAFKA_BROKERS at a closed port: every event goes to the spool

Phases:
1. startup (--startups times, on a fresh DATA_DIR each): `up` is launched, then /status is
   polled every 0.1 s until the agent reports kafka UP and process.consumer UP (the consumer
   has its partition): "ready". The milestones on the way come from the processes' own logs.
2. load: wrk -t2 -c<connections> for --duration s, bare, target, bare, target, ... bare, so
   each target run has a bare run right before and after it; ratio = value / mean of the two.
   For a target with a consumer: rows persisted during the load per second, and the seconds
   from the end of the load until every answered request has its row ("drain": the backlog,
   and so the lag, is 0); event->row latency of the run's rows (persisted_at - occurred_at).
   CPU per process (utime+stime from /proc over the run, % of one core), the peak RSS of each
   (sampled every 0.5 s), and the machine's total busy CPU (other work shares these cores).
3. latency at a paced rate (--paced-rate req/s for --paced-seconds on the whole appliance):
   event->row p50/p99 when the pipeline is not saturated.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import common
from http_throughput import schedule, summarize

from appliance import supervise
from appliance.agent.processes import rss_mb
from appliance.core.config import Settings

BASE = "bare waitress"  # as many processes as the appliance runs API processes: the ceiling
BARE1 = "bare 1 process"  # the one-process figure of earlier reports, beside it
UP, API, DOWN = "appliance up", "api default", "api kafka-down"
READY_TIMEOUT = 60.0
DRAIN_TIMEOUT = 60.0
TICKS = os.sysconf("SC_CLK_TCK")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load run (10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of bare/target (3)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--startups", type=int, default=3, help="`up` -> ready measurements (3)")
    parser.add_argument("--targets", default=",".join((UP, API, DOWN)),
                        help=f"comma-separated, of: {UP}, {API}, {DOWN}, {BARE1}")
    parser.add_argument("--paced-rate", type=float, default=200.0,
                        help="req/s of the paced latency phase (200; 0 skips it)")
    parser.add_argument("--paced-seconds", type=float, default=10.0, help="its duration (10)")
    parser.add_argument("--up-variant", action="append", default=[], metavar="NAME:VAR=V,VAR=V",
                        help="another `up` target, measured in the same alternation, e.g. "
                             "'linger 5:KAFKA_LINGER_MS=5,KAFKA_FETCH_WAIT_MAX_MS=10'")
    parser.add_argument("--api-variant", action="append", default=[], metavar="NAME:VAR=V,VAR=V",
                        help=f"another {API} target (the API with Kafka up and the consumer "
                             "running) with other settings, in the same alternation")
    parser.add_argument("--startup-only", action="store_true",
                        help="measure `up` -> ready only (no load phases)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for every appliance target, e.g. --env LOG_LEVEL=WARNING")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir (process logs)")
    return parser.parse_args()


# --- reading the processes -------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
    except (OSError, IndexError, ValueError):
        return 0.0


def with_workers(pids: dict[str, int]) -> dict[str, int]:
    """The API's workers (WEB_PROCESSES > 1: children of the API process), and the bare app's
    other processes, as processes too."""
    found = dict(pids)
    for parent in ("api", "bare"):
        for number, child in enumerate(common.children(pids[parent]) if parent in pids else []):
            found[f"{parent} worker {number}"] = child
    return found


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)



def utc_seconds(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


class Target:
    """One server under test: its port, its processes, and (with a consumer) its database."""

    def __init__(self, name: str, app: common.Appliance | None, port: int,
                 pids=lambda: {}, persists: bool = False) -> None:
        self.name, self.app, self.port, self.pids, self.persists = name, app, port, pids, persists
        self.runs: list[dict] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def last_rowid(self) -> int:
        rows = self.app.rows("SELECT COALESCE(MAX(rowid), 0) FROM http_responses")
        return rows[0][0] if rows else 0

    def persisted(self) -> int:
        rows = self.app.rows("SELECT COUNT(*) FROM http_responses WHERE route = '/'")
        return rows[0][0] if rows else 0

    def latencies_since(self, rowid: int) -> list[float]:
        rows = self.app.rows(f"SELECT persisted_at, occurred_at FROM http_responses "
                             f"WHERE rowid > {int(rowid)} AND route = '/'")
        return [(utc_seconds(p) - utc_seconds(o)) * 1000 for p, o in rows]


class Sampler(threading.Thread):
    """Peak RSS of each process while a run lasts."""

    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.pids, self.peak = pids, dict.fromkeys(pids, 0.0)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], rss_mb(pid))
            self.done.wait(0.5)

    def stop(self) -> dict[str, float]:
        self.done.set()
        self.join()
        return self.peak


def measure(target: Target, seconds: float, connections: int) -> dict:
    """One wrk run, with what the processes did meanwhile."""
    pids = with_workers(target.pids())
    if target.persists:
        answered_before, rowid_before = common.answered(target.port), target.last_rowid()
        persisted_before = target.persisted()
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    busy_before, total_before = machine_busy()
    wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler = Sampler(pids)
    sampler.start()
    started = time.monotonic()
    result = common.run_wrk(target.url, seconds, connections)
    elapsed = time.monotonic() - started
    peak = sampler.stop()
    busy_after, total_after = machine_busy()
    wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpus = os.cpu_count() or 1
    result["cpu"] = {name: (cpu_seconds(pid) - cpu_before[name]) / elapsed * 100
                     for name, pid in pids.items()}
    result["cpu"]["wrk"] = ((wrk_after.ru_utime + wrk_after.ru_stime)
                            - (wrk_before.ru_utime + wrk_before.ru_stime)) / elapsed * 100
    result["machine"] = (busy_after - busy_before) / max(1, total_after - total_before) * 100 * cpus
    result["rss"] = peak
    # CPU per request of the whole system under test (every process of it, not wrk).
    result["cpu_ms"] = sum(result["cpu"][name] for name in pids) / 100 * 1000 / max(result["rps"], 1)
    if target.persists:
        persisted_during = target.persisted() - persisted_before
        goal = common.answered(target.port)
        drained = drain_time(target, goal)
        result.update(persisted_s=persisted_during / elapsed, drain_s=drained,
                      answered=goal - answered_before,
                      e2e=target.latencies_since(rowid_before))
    return result


def drain_time(target: Target, goal: int) -> float:
    """Seconds from now until the database holds a row for every request answered."""
    started = time.monotonic()
    while time.monotonic() - started < DRAIN_TIMEOUT:
        if target.persisted() >= goal:
            return time.monotonic() - started
        time.sleep(0.05)
    return float("inf")


# --- starting the targets --------------------------------------------------------------------


class Up:
    """`simple-time-service up` on a fresh DATA_DIR."""

    def __init__(self, stack: contextlib.ExitStack, directory: Path, extra: dict[str, str]) -> None:
        directory.mkdir(parents=True)
        self.app = common.Appliance(directory, "embedded",
                                    EMBEDDED_BROKER_PORT=str(common.free_port()), **extra)
        self.log = directory / "up.log"
        self.process = common.Process([sys.executable, "-m", "appliance", "up"], self.app.env,
                                      self.log)
        stack.callback(self.process.stop, 90)
        self.launched = time.time()
        self.process.start()
        self.control = None

    def wait_ready(self) -> float:
        """Seconds from the launch until /status says kafka UP and process.consumer UP."""
        while time.time() - self.launched < READY_TIMEOUT:
            components = common.http_json(self.app.port, "/status", timeout=1).get("components", {})
            if (components.get("kafka", {}).get("state") == "UP"
                    and components.get("process.consumer", {}).get("state") == "UP"):
                return time.time() - self.launched
            if not self.process.running:
                raise SystemExit(f"up exited:\n{self.process.output()[-3000:]}")
            time.sleep(0.1)
        raise SystemExit(f"not ready within {READY_TIMEOUT:g} s:\n{self.process.output()[-3000:]}")

    def pids(self) -> dict[str, int]:
        if self.control is None:
            self.control = supervise.client(Settings(data_dir=self.app.data_dir)).supervisor
        found = {"supervisord": self.process.proc.pid}
        for info in self.control.getAllProcessInfo():
            if info["pid"]:
                found[info["name"]] = info["pid"]
        return found

    def milestones(self) -> dict[str, float]:
        """Seconds from the launch to each step, read from the log (supervisord's lines are in
        local time with a comma, the appliance's are JSON in UTC)."""
        marks = {"supervisord started": r"supervisord started", "programs spawned": r"spawned: 'api'",
                 "api serving": '"serving"', "api: kafka UP": '"kafka is UP"',
                 "consumer consuming": '"consuming"', "consumer assigned": '"partitions assigned"'}
        found: dict[str, float] = {}
        for line in self.log.read_text(errors="replace").splitlines():
            for name, pattern in marks.items():
                if name not in found and re.search(pattern, line):
                    moment = _line_time(line)
                    if moment is not None:
                        found[name] = moment - self.launched
        return found


def _line_time(line: str) -> float | None:
    if line.startswith("{"):
        with contextlib.suppress(ValueError, KeyError):
            return utc_seconds(json.loads(line)["time"].replace("Z", "000Z"))
        return None
    found = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})", line)
    if not found:
        return None
    return time.mktime(time.strptime(found.group(1), "%Y-%m-%d %H:%M:%S")) + int(found.group(2)) / 1000


def measure_startups(stack: contextlib.ExitStack, tmp: Path, count: int,
                     extra: dict[str, str]) -> tuple[list[dict], Up]:
    """Launch `up` ``count`` times; keep the last one running for the load phase."""
    results, up = [], None
    for i in range(count):
        if up is not None:
            up.process.stop(90)
        up = Up(stack, tmp / f"up{i}", extra)
        ready = up.wait_ready()
        results.append({"ready": ready, **up.milestones()})
        print(f"  startup {i + 1}/{count}: ready after {ready:.2f} s  "
              + "  ".join(f"{k} {v:.2f}" for k, v in results[-1].items() if k != "ready"), flush=True)
    return results, up


def parse_variant(text: str, base: str = UP) -> tuple[str, dict[str, str]]:
    name, _, settings = text.partition(":")
    return f"{base} {name.strip()}", dict(item.split("=", 1) for item in settings.split(",") if item)


def start_targets(stack: contextlib.ExitStack, tmp: Path, names: list[str], up: Up | None,
                  extra: dict[str, str], variants: list[str] = (),
                  api_variants: list[str] = ()) -> dict[str, Target]:
    processes = Settings.from_env(extra).api_processes
    port, pid = common.start_bare(stack, tmp, processes=processes)
    targets = {BASE: Target(f"{BASE} ({processes} processes)", None, port, lambda: {"bare": pid})}
    if BARE1 in names:
        port1, pid1 = common.start_bare(stack, tmp, processes=1)
        targets[BARE1] = Target(BARE1, None, port1, lambda: {"bare": pid1})
    if UP in names:
        targets[UP] = Target(UP, up.app, up.app.port, up.pids, persists=True)
    for number, text in enumerate(variants):
        name, settings = parse_variant(text)
        other = Up(stack, tmp / f"variant{number}", {**extra, **settings})
        other.wait_ready()
        targets[name] = Target(name, other.app, other.app.port, other.pids, persists=True)
    if API in names:
        targets[API] = start_api_default(stack, tmp / "api-default", API, extra)
    for number, text in enumerate(api_variants):
        name, settings = parse_variant(text, API)
        targets[name] = start_api_default(stack, tmp / f"api-variant{number}", name,
                                          {**extra, **settings})
    if DOWN in names:
        app = common.start_api(stack, tmp / "api-down", f"127.0.0.1:{common.free_port()}", **extra)
        pid = app.api.proc.pid
        targets[DOWN] = Target(DOWN, app, app.port, lambda: {"api": pid})
    return targets


def start_api_default(stack: contextlib.ExitStack, directory: Path, name: str,
                      settings: dict[str, str]) -> Target:
    """The API with Kafka up (a broker of its own) and the consumer running."""
    directory.mkdir(parents=True, exist_ok=True)
    broker = common.start_broker(stack, directory)
    app = common.start_api(stack, directory, broker.bootstrap, **settings)
    app.consumer.start()
    common.wait_until(lambda: app.get("/")[1].get("kafka_status") == "UP", 30, 0.2, "Kafka UP")
    pids = {"api": app.api.proc.pid, "consumer": app.consumer.proc.pid, "broker": broker.proc.pid}
    _wait_first_row(app)
    return Target(name, app, app.port, lambda: pids, persists=True)


def _wait_first_row(app: common.Appliance) -> None:
    """The consumer has joined its group: a row appears for a request."""
    def persisted() -> bool:
        app.get("/")
        return app.count("http_responses") > 0
    common.wait_until(persisted, 60, 0.5, "a first persisted row")


# --- the report ------------------------------------------------------------------------------


def report_cpu(runs: list, names: list[str]) -> None:
    """CPU ms per request of each system (all its processes), and its ratio to the baseline's
    runs just before and after it."""
    base = [r["cpu_ms"] for n, r in runs if n == BASE]
    rows = [[BASE, f"{common.median(base):.3f}", "1 (baseline)"]]
    for name in names:
        ratios = [r["cpu_ms"] / ((runs[i - 1][1]["cpu_ms"] + runs[i + 1][1]["cpu_ms"]) / 2)
                  for i, (n, r) in enumerate(runs) if n == name]
        mine = [r["cpu_ms"] for n, r in runs if n == name]
        rows.append([name, f"{common.median(mine):.3f}",
                     f"{common.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"])
    print("\nCPU ms per request, every process of the system (from /proc):")
    print(common.table(["server", "CPU ms/req", "ratio (min-max)"], rows))


def report_startups(results: list[dict]) -> None:
    if not results:
        return
    names = list(dict.fromkeys(k for r in results for k in r))
    print("\n`up` -> ready (s after launch; ready = /status: kafka UP and process.consumer UP)")
    rows = [[name, common.median([r[name] for r in results if name in r]),
             min(r.get(name, float("nan")) for r in results),
             max(r.get(name, float("nan")) for r in results)] for name in names]
    print(common.table(["milestone", "median s", "min s", "max s"], [
        [n, f"{m:.2f}", f"{lo:.2f}", f"{hi:.2f}"] for n, m, lo, hi in rows]))


def report_processes(targets: dict[str, Target], runs: list) -> None:
    for name, target in targets.items():
        mine = [r for n, r in runs if n == name]
        if name == BASE or not mine:
            continue
        print(f"\n{name}: per process over its {len(mine)} runs (median; CPU % of one core, "
              f"of {100 * (os.cpu_count() or 1)} %)")
        procs = list(dict.fromkeys(p for r in mine for p in r["cpu"]))
        rows = [[p, f"{common.median([r['cpu'].get(p, 0) for r in mine]):.1f}",
                 f"{max(r['rss'].get(p, 0) for r in mine):.0f}" if p != "wrk" else "-"]
                for p in procs]
        rows.append(["machine (all)", f"{common.median([r['machine'] for r in mine]):.1f}", "-"])
        print(common.table(["process", "CPU %", "peak RSS MB"], rows))
        if target.persists:
            e2e = [v for r in mine for v in r["e2e"]]
            drains = [r["drain_s"] for r in mine]
            print(f"  answered {sum(r['answered'] for r in mine):,} in all; persisted/s during the "
                  f"load {common.median([r['persisted_s'] for r in mine]):,.0f} (median; req/s "
                  f"{common.median([r['rps'] for r in mine]):,.0f}); drain after the load "
                  f"{common.median(drains):.2f} s (max {max(drains):.2f})")
            print(f"  event->row under load: p50 {common.percentile(e2e, 50):.0f} ms, "
                  f"p99 {common.percentile(e2e, 99):.0f} ms, max {max(e2e, default=0):.0f} ms "
                  f"({len(e2e):,} rows)")


def report_down_vs_up(runs: list) -> None:
    ups = [r["p99"] for n, r in runs if n == API]
    downs = [r["p99"] for n, r in runs if n == DOWN]
    if ups and downs:
        print(f"\np99 Kafka down / Kafka up (api default): {common.median(downs):.2f} / "
              f"{common.median(ups):.2f} ms = {common.median(downs) / common.median(ups):.2f}")


def paced_latency(target: Target, rate: float, seconds: float, tmp: Path) -> None:
    rowid = target.last_rowid()
    common.paced_load(target.port, rate, seconds, 4, str(tmp / "paced.txt"))
    drain_time(target, common.answered(target.port))
    e2e = target.latencies_since(rowid)
    print(f"\n{target.name} at a paced {rate:g} req/s for {seconds:g} s: event->row p50 "
          f"{common.percentile(e2e, 50):.0f} ms, p99 {common.percentile(e2e, 99):.0f} ms, "
          f"max {max(e2e, default=0):.0f} ms ({len(e2e):,} rows)")


def main() -> int:
    args = parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in names if n not in (UP, API, DOWN, BARE1)]  # --up-variant adds its own
    if unknown:
        raise SystemExit(f"unknown targets: {unknown}")
    if not common.have_wrk():
        raise SystemExit("appliance: needs wrk (apt-get install wrk)")
    print(f"appliance: wrk -t2 -c{args.connections} -d{args.duration:g}s, {args.rounds} rounds, "
          f"{extra or 'defaults'}; {common.machine()}", flush=True)
    with common.session(args.keep) as (tmp, stack):
        common.require_broker_binary()
        startups, up = ([], None)
        if UP in names or args.startup_only:
            startups, up = measure_startups(stack, tmp, max(1, args.startups), extra)
        if args.startup_only:
            report_startups(startups)
            return 0
        targets = start_targets(stack, tmp, names, up, extra, args.up_variant, args.api_variant)
        names += [parse_variant(v)[0] for v in args.up_variant]
        names += [parse_variant(v, API)[0] for v in args.api_variant]
        for target in targets.values():  # warm-up: connections, lazy imports, caches
            common.run_wrk(target.url, 2, args.connections)
        order = schedule(names, args.rounds, BASE)
        runs = []
        for i, name in enumerate(order, 1):
            result = measure(targets[name], args.duration, args.connections)
            runs.append((name, result))
            extra_text = (f"  persisted/s {result['persisted_s']:7,.0f}  drain {result['drain_s']:.2f} s"
                          f"  event->row p99 {common.percentile(result['e2e'], 99):,.0f} ms"
                          if "persisted_s" in result else "")
            print(f"  [{i:2}/{len(order)}] {name:15} {result['rps']:8,.0f} req/s  p50 "
                  f"{result['p50']:6.2f} ms  p99 {result['p99']:6.2f} ms  errors "
                  f"{result['errors']}{extra_text}", flush=True)
        print()
        print(summarize(runs, names, BASE))
        report_cpu(runs, names)
        print("\nratios: target / mean of the bare runs just before and after it; median over "
              f"{args.rounds} rounds (p50/p99 ratio above 1: slower)")
        report_startups(startups)
        report_processes(targets, runs)
        report_down_vs_up(runs)
        if args.paced_rate:
            for name, target in targets.items():
                if name.startswith(UP):
                    paced_latency(target, args.paced_rate, args.paced_seconds, tmp)
    return 0


if __name__ == "__main__":
    common.run_main(main)

"""The API's own process manager against supervisord's numprocs, measured in the same run.

Two variants of the `api` program with two API processes, each under its own supervisord made
the way `simple-time-service up` makes it (conf/supervisord.conf, only [program:api]):

  parent     today: WEB_PROCESSES=2, `python -m appliance api` is a parent
             (appliance/api/workers/parent.py) that binds once, starts two workers on the socket it
             shares with them, restarts one that dies, passes signals on; the workers share the
             connections out evenly (appliance/api/serving/balance.py)
  numprocs   the prototype: [program:api] with numprocs=2 and
             process_name=%(program_name)s-%(process_num)s, each process
             bench/reuseport_api.py %(process_num)s 2: the normal API entry point with
             WEB_PROCESSES=1, its own socket bound with SO_REUSEPORT on the same port, worker
             index = process_num (its own spool file and sibling socket)

Phases (everything on 127.0.0.1, every process stopped at the end):

1. load, for Kafka off and Kafka up (a Tansu broker per variant, no consumer), with wrk -t2 -c32
   and -c4: parent, numprocs, parent, ... parent (--rounds numprocs runs, each between two
   parent runs); per run req/s, p50/p99, CPU ms per request of every process of the tree
   (supervisord, the parent if any, the workers; from /proc), and what each worker did
   (requests from its own prometheus counter file, connections it held mid-run from /proc).
2. connection split: --split-trials times, 4 (and 32) connections opened at once with one
   request each; the connections each worker then holds (/proc). The kernel's SO_REUSEPORT
   choice is a hash of each connection's addresses and ports; the parent's is balance.py.
3. kill -9 of worker 1 under wrk -c32 plus one new connection every 20 ms (so a restarted
   worker can get some): requests failed, seconds until a new process has that index and until
   it has served a request, what the other served in the second after the kill; then the
   same worker killed again as soon as it serves (the back-off), and (parent) kill -9 of the
   parent itself.
4. startup errors: PORT=0; the port held by a plain listener (a bind error): what each variant
   says, supervisord's state and how long until FATAL; kill -9 of supervisord, then the same
   tree started again on the same DATA_DIR and port while the orphans still serve.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import sys
import threading
import time
import xmlrpc.client
from pathlib import Path

import common
from http_throughput import schedule
from procs import clean_environment
from prometheus_client.mmap_dict import MmapedDict
from whole_appliance import cpu_seconds, machine_busy

from appliance import supervise
from appliance.core import supervisor
from appliance.core.config import Settings

PARENT, NUMPROCS = "parent", "numprocs"
VARIANTS = (PARENT, NUMPROCS)
WORKERS = 2
SHIM = common.REPO / "bench" / "reuseport_api.py"
API_COMMAND = "command=%(ENV_STS_PYTHON)s -m appliance api"
START_TIMEOUT = 30.0
FATAL_TIMEOUT = 150.0
GET = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
GET_CLOSE = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (10)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="numprocs runs per scenario, each between two parent runs (3)")
    parser.add_argument("--connections", default="32,4", help="wrk -c values (32,4)")
    parser.add_argument("--kafka", default="off,up", help="Kafka modes for the load (off,up)")
    parser.add_argument("--split-trials", type=int, default=40,
                        help="connection-split trials per variant and size (40; 0 skips)")
    parser.add_argument("--sweep-runs", type=int, default=24,
                        help="short wrk -c4 runs per variant and Kafka mode, numprocs runs grouped "
                             "by the connection split they got (24; 0 skips)")
    parser.add_argument("--sweep-seconds", type=float, default=3.0, help="seconds of each (3)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every run here")
    parser.add_argument("--no-kill", action="store_true", help="skip the kill -9 phase")
    parser.add_argument("--no-errors", action="store_true", help="skip PORT=0 / bind errors")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir (process logs)")
    return parser.parse_args()


# --- what the processes did, from /proc and their metric files -------------------------------


def served(metrics_dir: Path, pid: int) -> int:
    """Requests this process counted (http_requests_total, every label) in its counter file."""
    path = metrics_dir / f"counter_{pid}.db"
    try:
        values = MmapedDict.read_all_values_from_file(str(path))
    except (OSError, ValueError):
        return 0
    return int(sum(value for key, value, *_ in values if json.loads(key)[1] == "http_requests_total"))


def established_inodes(port: int) -> set[str]:
    """Socket inodes of the server side of established TCP connections to ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                    found.add(fields[9])
    return found


def connections(pids: list[int], port: int) -> dict[int, int]:
    """Established connections to ``port`` each process holds (accepted: it has the fd)."""
    inodes = established_inodes(port)
    held = {}
    for pid in pids:
        count = 0
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    count += link.startswith("socket:[") and link[8:-1] in inodes
        held[pid] = count
    return held


def listeners(port: int) -> int:
    """Listening TCP sockets on ``port`` (SO_REUSEPORT: one per process)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            next(lines)
            count += sum(int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == "0A"
                         for f in (line.split() for line in lines))
    return count


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as status:
            return "zombie" not in next(line for line in status if line.startswith("State:")).lower()
    except (OSError, StopIteration):
        return False


def worker_index(pid: int) -> int | None:
    """The parent's worker index of ``pid``, from its command line (api --worker SLOT)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            words = cmdline.read().split(b"\0")
        return int(words[words.index(b"--worker") + 1].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return None


# --- one variant: a supervisord with the api program -----------------------------------------


class Tree:
    """supervisord + the api program of one variant, in ``directory``."""

    def __init__(self, stack: contextlib.ExitStack, directory: Path, variant: str, port: int,
                 brokers: str | None = None, data_dir: Path | None = None, **extra: str) -> None:
        self.variant, self.port, self.directory = variant, port, directory
        self.data_dir = data_dir or directory / "data"
        directory.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = clean_environment({"HOST": "127.0.0.1", "PORT": str(port),
                                 "DATA_DIR": str(self.data_dir), "LOG_LEVEL": "WARNING",
                                 "KAFKA_BROKERS": brokers or "", "WEB_PROCESSES": str(WORKERS),
                                 "APPLIANCE_PROGRAMS": "api", **extra})
        # PORT=0 is refused by the programs' own configuration check, which is what phase 4
        # shows; the bench's own Settings only need the paths.
        self.settings = Settings.from_env({**env, "PORT": str(port or 1)})
        env, programs = supervise.up_environment(self.settings, env)  # what `up` exports
        supervise.prepare_data_dir(self.settings, programs)  # writes DATA_DIR/supervisord.conf
        conf = self.settings.layout.supervisord_conf
        if variant == NUMPROCS:
            conf.write_text(numprocs_config(conf.read_text(), WORKERS))
        binary = shutil.which("supervisord", path=os.path.dirname(sys.executable)) or "supervisord"
        self.log = directory / f"supervisord-{int(time.time() * 1000)}.log"
        self.process = common.Process([binary, "-n", "-c", str(conf)], env, self.log)
        self.launched = 0.0
        self.fatal_after = float("nan")
        stack.callback(self.process.stop, 60)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def metrics_dir(self) -> Path:
        return self.settings.metrics_dir

    def start(self) -> "Tree":
        if supervise.already_running(self.settings):  # as `up`: a stale control socket goes
            raise SystemExit(f"{self.variant}: a supervisord already runs in {self.data_dir}")
        self.launched = time.monotonic()
        self.process.start()
        self.fatal_after = float("nan")
        threading.Thread(target=self._watch_fatal, daemon=True).start()
        return self

    def _watch_fatal(self) -> None:
        """fatal_after: seconds from the launch until every api process was FATAL."""
        while self.process.running and time.monotonic() - self.launched < FATAL_TIMEOUT:
            states = self.states()
            if states and all(s == "FATAL" for s in states):
                self.fatal_after = time.monotonic() - self.launched
                return
            time.sleep(0.2)

    def wait_serving(self) -> "Tree":
        """Every worker has answered a /healthz (new connections until each has)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            workers = self.workers()
            if len(workers) == WORKERS and all(served(self.metrics_dir, p) for p in workers.values()):
                return self
            common.http_json(self.port, "/healthz", 1)
            if not self.process.running:
                break
            time.sleep(0.02)
        raise SystemExit(f"{self.variant}: not serving within {START_TIMEOUT:g} s:\n"
                         f"{self.output()[-3000:]}")

    def output(self) -> str:
        return self.process.output()

    def infos(self) -> list[dict]:
        try:
            return supervisor.processes(self.settings)
        except (supervisor.NotRunning, xmlrpc.client.Fault, OSError):  # stopping, or gone
            return []

    def workers(self) -> dict[int, int]:
        """Worker index -> pid of the API processes serving now."""
        found = {}
        for info in self.infos():
            if not info["pid"] or info["statename"] not in ("STARTING", "RUNNING"):
                continue
            if self.variant == NUMPROCS:
                found[int(info["name"].rsplit("-", 1)[1])] = info["pid"]
            else:
                for child in common.children(info["pid"]):
                    index = worker_index(child)
                    if index is not None and alive(child):
                        found[index] = child
        return dict(sorted(found.items()))

    def pids(self) -> dict[str, int]:
        """Every process of the tree."""
        found = {"supervisord": self.process.proc.pid} if self.process.running else {}
        if self.variant == PARENT:
            found.update({"api parent": i["pid"] for i in self.infos() if i["pid"]})
        found.update({f"worker {index}": pid for index, pid in self.workers().items()})
        return found

    def states(self) -> list[str]:
        return [info["statename"] for info in self.infos()]

    def spawns(self) -> int:
        return len(re.findall(r"spawned: 'api", self.output()))


def numprocs_config(text: str, count: int) -> str:
    """conf/supervisord.conf's [program:api] as ``count`` processes of the prototype."""
    if API_COMMAND not in text:
        raise SystemExit(f"conf/supervisord.conf has no line {API_COMMAND!r}: update the bench")
    return text.replace(API_COMMAND, f"command=%(ENV_STS_PYTHON)s {SHIM} %(process_num)s {count}\n"
                                     f"numprocs={count}\nprocess_name=%(program_name)s-%(process_num)s")


# --- phase 1: load -------------------------------------------------------------------------


def measure(tree: Tree, seconds: float, conns: int, broker_pid: int | None) -> dict:
    pids = tree.pids()
    workers = tree.workers()
    served_before = {i: served(tree.metrics_dir, pid) for i, pid in workers.items()}
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    broker_before = cpu_seconds(broker_pid) if broker_pid else 0.0
    busy_before, total_before = machine_busy()
    held: dict[int, int] = {}

    def sample() -> None:
        by_pid = connections(list(workers.values()), tree.port)
        held.update({i: by_pid[pid] for i, pid in workers.items()})

    timer = threading.Timer(seconds / 2, sample)
    timer.start()
    started = time.monotonic()
    result = common.run_wrk(tree.url, seconds, conns)
    elapsed = time.monotonic() - started
    timer.join()
    busy_after, total_after = machine_busy()
    cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    requests = max(1, result["requests"])
    result["cpu_ms"] = sum(cpu.values()) * 1000 / requests
    result["cpu_by_process"] = {name: value * 1000 / requests for name, value in cpu.items()}
    if broker_pid:
        result["broker_cpu_ms"] = (cpu_seconds(broker_pid) - broker_before) * 1000 / requests
    cores = os.cpu_count() or 1
    result["machine"] = (busy_after - busy_before) / max(1, total_after - total_before) * 100 * cores
    result["per_worker"] = [served(tree.metrics_dir, workers[i]) - served_before[i] for i in workers]
    result["held"] = [held.get(i, 0) for i in workers]
    result["elapsed"] = elapsed
    # A process of the tree that is not there any more (its CPU would be counted negative): the
    # run measured a restart, not the variant; say so, with what supervisord said.
    gone = [name for name, pid in pids.items() if not alive(pid)]
    result["restarted"] = gone
    if gone:
        said = [line for line in tree.output().splitlines()
                if not line.startswith("{") and re.search(r"exited|spawned|stopped|gave up", line)]
        print(f"  WARNING {tree.variant}: {gone} gone during the run; supervisord: {said[-4:]}",
              flush=True)
    return result


def load_phase(trees: dict[str, Tree], kafka: str, conns: int, args, brokers: dict) -> list:
    runs = []
    order = schedule([NUMPROCS], args.rounds, PARENT)
    for tree in trees.values():  # warm-up
        common.run_wrk(tree.url, 2, conns)
    for i, name in enumerate(order, 1):
        result = measure(trees[name], args.duration, conns, brokers.get(name))
        runs.append((name, result))
        print(f"  [kafka {kafka} -c{conns} {i:2}/{len(order)}] {name:8} {result['rps']:7,.0f} req/s  "
              f"p50 {result['p50']:6.2f}  p99 {result['p99']:6.2f} ms  "
              f"CPU {result['cpu_ms']:.3f} ms/req  "
              f"per worker {result['per_worker']}  held {result['held']}  errors {result['errors']}",
              flush=True)
    return runs


def sweep_phase(trees: dict[str, Tree], kafka: str, args, brokers: dict) -> list:
    """Short wrk -c4 runs, parent and numprocs alternately: each run opens 4 new connections,
    so each numprocs run gets a new draw of the kernel's split."""
    runs = []
    for i, name in enumerate(schedule([NUMPROCS], args.sweep_runs, PARENT), 1):
        result = measure(trees[name], args.sweep_seconds, 4, brokers.get(name))
        runs.append((name, result))
        if i % 10 == 0:
            print(f"  [kafka {kafka} -c4 sweep {i}/{2 * args.sweep_runs + 1}]", flush=True)
    return runs


def summarize_sweep(sweeps: list[tuple[str, list]]) -> str:
    rows = []
    for label, runs in sweeps:
        groups: dict[str, dict[str, list[float]]] = {}
        for i, (name, result) in enumerate(runs):
            split = split_key(result["held"])
            group = groups.setdefault(f"{name} {split}", {"rps": [], "ratio": [], "p99": [], "cpu": []})
            group["rps"].append(result["rps"])
            if name == NUMPROCS:
                before, after = runs[i - 1][1], runs[i + 1][1]
                group["ratio"].append(result["rps"] / ((before["rps"] + after["rps"]) / 2))
                group["p99"].append(result["p99"] / ((before["p99"] + after["p99"]) / 2))
                group["cpu"].append(result["cpu_ms"] / ((before["cpu_ms"] + after["cpu_ms"]) / 2))
        for key in sorted(groups):
            g = groups[key]
            rows.append([label, key, len(g["rps"]), spread(g["rps"]),
                         spread(g["ratio"], "{:.2f}") if g["ratio"] else "1 (baseline)",
                         f"{common.median(g['p99']):.2f}" if g["p99"] else "1",
                         f"{common.median(g['cpu']):.2f}" if g["cpu"] else "1"])
    return common.table(["scenario", "variant and split", "runs", "req/s median (min-max)",
                         "req/s ratio (min-max)", "p99 ratio", "CPU/req ratio"], rows)


def split_key(held: list[int]) -> str:
    return "/".join(map(str, sorted(held, reverse=True)))


def spread(values: list[float], fmt: str = "{:,.0f}") -> str:
    return f"{fmt.format(common.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def summarize(scenarios: list[tuple[str, list]]) -> str:
    rows = []
    for label, runs in scenarios:
        for name in VARIANTS:
            mine = [(i, r) for i, (n, r) in enumerate(runs) if n == name]
            ratios = {"rps": [], "p99": [], "cpu_ms": []}
            if name == NUMPROCS:
                for i, result in mine:
                    before, after = runs[i - 1][1], runs[i + 1][1]
                    for key in ratios:
                        ratios[key].append(result[key] / ((before[key] + after[key]) / 2))
            results = [r for _, r in mine]
            shares = [min(r["per_worker"]) / max(1, sum(r["per_worker"])) for r in results]
            held = ", ".join(sorted(split_key(r["held"]) for r in results))
            rows.append([
                label, name, spread([r["rps"] for r in results]),
                f"{common.median(ratios['rps']):.2f} ({min(ratios['rps']):.2f}-{max(ratios['rps']):.2f})"
                if ratios["rps"] else "1 (baseline)",
                spread([r["p99"] for r in results], "{:.1f}"),
                f"{common.median(ratios['p99']):.2f}" if ratios["p99"] else "1",
                spread([r["cpu_ms"] for r in results], "{:.3f}"),
                f"{common.median(ratios['cpu_ms']):.2f}" if ratios["cpu_ms"] else "1",
                spread([s * 100 for s in shares], "{:.0f}%"), held,
                sum(r["errors"] for r in results), sum(bool(r["restarted"]) for r in results)])
    return common.table(["scenario", "variant", "req/s median (min-max)", "req/s ratio",
                         "p99 ms", "p99 ratio", "CPU ms/req", "CPU ratio",
                         "least-busy worker's share", "connections held mid-run", "errors",
                         "runs with a restart"], rows)


def kafka_counters(trees: dict[str, Tree]) -> list[str]:
    lines = []
    for name, tree in trees.items():
        deadline = time.monotonic() + 10  # the last run's events may still be in flight
        while True:
            body = common.http_json(tree.port, "/kafka/status")
            if body.get("queued") == body.get("delivered") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        fields = ("state", "queued", "delivered", "spooled", "lost", "in_queue", "spool_depth")
        workers = [(w.get("worker"), w.get("queued")) for w in body.get("workers", [])]
        lines.append(f"  {name:8} " + " ".join(f"{k}={body.get(k)}" for k in fields)
                     + f" workers(index, queued)={workers}"
                     + f" unreachable={body.get('workers_unreachable')}")
    return lines


# --- phase 2: the connection split --------------------------------------------------------------


def read_reply(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head


def split_trials(tree: Tree, size: int, trials: int) -> list[tuple[int, ...]]:
    """``size`` connections opened at once, one request each; how many each worker holds."""
    workers = list(tree.workers().values())
    splits = []
    for _ in range(trials):
        socks = [socket.create_connection(("127.0.0.1", tree.port), timeout=10) for _ in range(size)]
        try:
            for sock in socks:
                sock.sendall(GET)
            for sock in socks:
                read_reply(sock)
            held = connections(workers, tree.port)
            splits.append(tuple(sorted(held.values(), reverse=True)))
        finally:
            for sock in socks:
                sock.close()
        with contextlib.suppress(AssertionError):  # the workers noticed the closes
            common.wait_until(lambda: sum(connections(workers, tree.port).values()) == 0, 3, 0.02)
        time.sleep(0.25)  # balance.py publishes the new counts within its 0.1 s tick
    return splits


def split_text(splits: list[tuple[int, ...]]) -> str:
    counts: dict[str, int] = {}
    for split in splits:
        key = "/".join(map(str, split))
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{key} x{n}" for key, n in sorted(counts.items(), key=lambda kv: -kv[1]))


# --- phase 3: kill -9 under load -----------------------------------------------------------


class Prober(threading.Thread):
    """One new connection every ``interval`` s (GET /, Connection: close): (time, ok)."""

    def __init__(self, port: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.port, self.interval = port, interval
        self.results: list[tuple[float, bool]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            started = time.monotonic()
            ok = False
            with contextlib.suppress(OSError, AttributeError, ValueError):
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                    sock.sendall(GET_CLOSE)
                    ok = read_reply(sock).startswith(b"HTTP/1.1 200")
            self.results.append((started, ok))
            self.done.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def stop(self) -> list[tuple[float, bool]]:
        self.done.set()
        self.join()
        return self.results


def wait_restarted(tree: Tree, index: int, old_pid: int, started: float,
                   deadline: float) -> tuple[float, float, int]:
    """(seconds from ``started`` until a new pid has ``index``, until it served a request, the
    new pid)."""
    spawned = serving = float("nan")
    new = 0
    while time.monotonic() < deadline:
        pid = tree.workers().get(index)
        if pid and pid != old_pid:
            if new != pid:
                new, spawned = pid, time.monotonic() - started
            if served(tree.metrics_dir, pid) > 0:
                serving = time.monotonic() - started
                break
        time.sleep(0.02)
    return spawned, serving, new


def kill_phase(tree: Tree, seconds: float = 16.0) -> dict:
    """wrk -c32 + a new connection every 20 ms; kill -9 worker 1 at 3 s, and again as soon as
    its successor serves (the back-off); seconds until each successor serves."""
    workers = tree.workers()
    survivor, victim = workers[0], workers[1]
    uptime = time.monotonic() - tree.launched
    wrk: dict = {}
    load = threading.Thread(target=lambda: wrk.update(common.run_wrk(tree.url, seconds, 32)))
    prober = Prober(tree.port)
    load.start()
    prober.start()
    time.sleep(2)
    second_before = served(tree.metrics_dir, survivor)
    time.sleep(1)
    survivor_before = served(tree.metrics_dir, survivor)
    second_before = survivor_before - second_before
    first_second: list[int] = []
    timer = threading.Timer(1.0, lambda: first_second.append(
        served(tree.metrics_dir, survivor) - survivor_before))
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    timer.start()
    spawned, serving, new = wait_restarted(tree, 1, victim, killed_at, killed_at + seconds - 3)
    timer.join()
    second = (float("nan"), float("nan"))
    if new and time.monotonic() < killed_at + seconds - 5:
        again_at = time.monotonic()
        os.kill(new, signal.SIGKILL)
        spawned2, serving2, _ = wait_restarted(tree, 1, new, again_at, killed_at + seconds - 3)
        second = (spawned2, serving2)
    load.join()
    probes = prober.stop()
    after = [ok for t, ok in probes if t >= killed_at]
    workers_after = tree.workers()
    return {"wrk": wrk, "uptime_s": uptime, "survivor_first_second": first_second[0],
            "survivor_second_before": second_before,
            "spawned_s": spawned, "serving_s": serving, "again_spawned_s": second[0],
            "again_serving_s": second[1], "probes": len(probes),
            "probes_failed": sum(not ok for _, ok in probes), "probes_failed_after_kill":
            sum(not ok for ok in after), "workers_after": workers_after}


def kill_parent(tree: Tree, seconds: float = 8.0) -> dict:
    """Today only: kill -9 of the parent under load (the workers die with it)."""
    parent = next(i["pid"] for i in tree.infos() if i["pid"])
    wrk: dict = {}
    load = threading.Thread(target=lambda: wrk.update(common.run_wrk(tree.url, seconds, 32)))
    prober = Prober(tree.port)
    load.start()
    prober.start()
    time.sleep(2)
    killed_at = time.monotonic()
    os.kill(parent, signal.SIGKILL)
    answered = float("nan")
    while time.monotonic() < killed_at + seconds:
        ok = [t for t, good in list(prober.results) if good and t > killed_at + 0.05]
        if ok and len(tree.workers()) == WORKERS:
            answered = ok[0] - killed_at
            break
        time.sleep(0.05)
    load.join()
    probes = prober.stop()
    return {"wrk": wrk, "serving_s": answered, "probes_failed": sum(not ok for _, ok in probes),
            "probes": len(probes)}


# --- phase 4: PORT=0, bind errors, kill -9 of supervisord -----------------------------------


def serving_ports(tree: Tree) -> list[int]:
    return [json.loads(line)["port"] for line in tree.output().splitlines()
            if line.startswith("{") and '"message":"serving"' in line]


def wait_fatal(tree: Tree) -> float:
    """Seconds from the launch until every api process was FATAL (nan: not within the timeout)."""
    while math.isnan(tree.fatal_after) and time.monotonic() - tree.launched < FATAL_TIMEOUT:
        time.sleep(0.2)
    return tree.fatal_after


def error_lines(tree: Tree) -> list[str]:
    return [line for line in tree.output().splitlines() if line.startswith("simple-time-service:")]


def startup_errors(stack: contextlib.ExitStack, tmp: Path) -> dict:
    results: dict = {}
    # port 0 as the code binds it (Settings(port=0), as tests/test_server.py does): the parent
    # binds once and every worker inherits that socket; each prototype process binds its own
    from reuseport_api import reuseport_bind

    from appliance.api.server import bind
    shared = bind("127.0.0.1", 0)
    own = [reuseport_bind("127.0.0.1", 0) for _ in range(WORKERS)]
    results["bind(port 0)"] = (f"parent: one socket, port {shared.getsockname()[1]} for all "
                               f"workers; prototype: {WORKERS} processes bound ports "
                               f"{[s.getsockname()[1] for s in own]}")
    for sock in (shared, *own):
        sock.close()
    # PORT=0 in the environment, and a bind error: the port held by a plain listener
    zero = {v: Tree(stack, tmp / f"port0-{v}", v, 0).start() for v in VARIANTS}
    # (no SO_REUSEPORT); and kill -9 of supervisord, then the same tree again while its
    # orphans still serve
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    stack.callback(holder.close)
    held_port = holder.getsockname()[1]
    busy = {v: Tree(stack, tmp / f"bind-{v}", v, held_port).start() for v in VARIANTS}
    first = {v: Tree(stack, tmp / f"orphans-{v}", v, common.free_port()).start() for v in VARIANTS}
    orphans: dict[str, list[int]] = {}
    again: dict[str, Tree] = {}
    for variant, tree in first.items():
        tree.wait_serving()
        pids = [pid for name, pid in tree.pids().items() if name != "supervisord"]
        orphans[variant] = pids
        stack.callback(lambda pids=pids: [os.kill(p, signal.SIGKILL) for p in pids if alive(p)])
        os.kill(tree.process.proc.pid, signal.SIGKILL)
        time.sleep(2)
        still = [p for p in pids if alive(p)]
        answering = bool(common.http_json(tree.port, "/healthz", 1))
        again[variant] = Tree(stack, tree.directory / "again", variant, tree.port,
                              data_dir=tree.data_dir, LOG_LEVEL="INFO").start()
        results[f"kill -9 supervisord {variant}"] = (
            f"{len(still)} of {len(pids)} API processes still alive 2 s later, port answering: "
            f"{answering}")
    for variant, tree in again.items():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
                tree.output().count('"message":"serving"') >= WORKERS or "FATAL" in tree.states()
                or error_lines(tree)):
            time.sleep(0.2)
        time.sleep(3)
        pids = orphans[variant] + [pid for name, pid in tree.pids().items()
                                   if name.startswith("worker")]
        held: dict[int, int] = {}
        timer = threading.Timer(1.5, lambda: held.update(connections(pids, tree.port)))
        timer.start()
        common.run_wrk(tree.url, 3, 32)
        timer.join()
        old = sum(held.get(p, 0) for p in orphans[variant])
        new = sum(held.get(p, 0) for p in pids if p not in orphans[variant])
        results[f"again on the orphans' port {variant}"] = (
            f"listening sockets on the port {listeners(tree.port)}; supervisord "
            f"{tree.states()} after {time.monotonic() - tree.launched:.0f} s; under wrk -c32 the "
            f"orphans held {old} connections, the new tree {new}; error lines "
            f"{len(error_lines(tree))}")
    for variant, tree in [*(("PORT=0 " + v, t) for v, t in zero.items()),
                          *(("bind error " + v, t) for v, t in busy.items())]:
        fatal = wait_fatal(tree)
        lines = error_lines(tree)
        results[variant] = (
            f"FATAL after {fatal:.1f} s, {tree.spawns()} spawns; {len(lines)} error lines, "
            f"e.g. {lines[0] if lines else '-'!r}; 'gave up' lines "
            f"{tree.output().count('gave up')}")
    for variant, tree in again.items():
        if "FATAL" not in tree.states():
            continue
        fatal = wait_fatal(tree)
        results[f"again on the orphans' port {variant}"] += (
            f"; all FATAL after {fatal:.1f} s, {tree.spawns()} spawns")
    return results


# --- main ------------------------------------------------------------------------------------


def start_pair(stack: contextlib.ExitStack, tmp: Path, kafka: str) -> tuple[dict[str, Tree], dict]:
    trees, broker_pids = {}, {}
    for variant in VARIANTS:
        brokers = None
        if kafka == "up":
            directory = tmp / f"broker-{kafka}-{variant}"
            directory.mkdir(parents=True)
            broker = common.start_broker(stack, directory)
            brokers, broker_pids[variant] = broker.bootstrap, broker.proc.pid
        trees[variant] = Tree(stack, tmp / f"kafka-{kafka}-{variant}", variant,
                              common.free_port(), brokers).start()
    for tree in trees.values():
        tree.wait_serving()
        if kafka == "up":
            common.wait_until(lambda t=tree: common.http_json(t.port, "/kafka/status").get("connected"),
                              30, 0.2, f"{tree.variant}: every worker connected to Kafka")
    return trees, broker_pids


def main() -> int:
    args = parse_args()
    sizes = [int(c) for c in args.connections.split(",") if c]
    modes = [m for m in args.kafka.split(",") if m]
    if not common.have_wrk():
        raise SystemExit("process_manager: needs wrk (apt-get install wrk)")
    print(f"process_manager: {WORKERS} API processes, wrk -t2 -c{sizes} -d{args.duration:g}s, "
          f"{args.rounds} rounds; {common.machine()}", flush=True)
    scenarios, sweeps, splits, kills, counters = [], [], {}, {}, {}
    with common.session(args.keep) as (tmp, stack):
        for kafka in modes:
            with contextlib.ExitStack() as pair:
                trees, brokers = start_pair(pair, tmp, kafka)
                for conns in sizes:
                    scenarios.append((f"kafka {kafka} -c{conns}",
                                      load_phase(trees, kafka, conns, args, brokers)))
                if args.sweep_runs:
                    sweeps.append((f"kafka {kafka} -c4 x{args.sweep_seconds:g}s",
                                   sweep_phase(trees, kafka, args, brokers)))
                if kafka == "up":
                    counters = kafka_counters(trees)
                if args.split_trials and kafka == modes[0]:
                    for variant, tree in trees.items():
                        for size in (4, 32):
                            splits[variant, size] = split_trials(tree, size, args.split_trials)
                if not args.no_kill and kafka == modes[-1]:
                    for variant, tree in trees.items():
                        kills[variant] = kill_phase(tree)
                    kills["parent: kill -9 of the parent"] = kill_parent(trees[PARENT])
        errors = {} if args.no_errors else startup_errors(stack, tmp)

    print("\nload (numprocs ratio: to the mean of the parent runs just before and after it; "
          f"median over {args.rounds} rounds)")
    print(summarize(scenarios))
    if sweeps:
        print(f"\nwrk -c4 sweep ({args.sweep_runs} short runs per variant, alternating; numprocs "
              "ratio to the parent runs just before and after; grouped by the connections each "
              "worker held mid-run)")
        print(summarize_sweep(sweeps))
    if args.json:
        args.json.write_text(json.dumps({
            "machine": common.machine(), "args": {k: str(v) for k, v in vars(args).items()},
            "load": scenarios, "sweeps": sweeps,
            "splits": {f"{v} {n}": x for (v, n), x in splits.items()},
            "kills": kills, "errors": errors}, default=str, indent=1))
    if counters:
        print("\nKafka counters after the Kafka-up runs:\n" + "\n".join(counters))
    if splits:
        print(f"\nconnection split ({args.split_trials} trials each: N connections opened at once, "
              "one request each, then the connections each worker holds)")
        print(common.table(["variant", "connections", "splits seen"],
                           [[v, str(n), split_text(s)] for (v, n), s in splits.items()]))
    if kills:
        print("\nkill -9 under wrk -c32 (+ a new connection every 20 ms)")
        for name, k in kills.items():
            w = k["wrk"]
            text = (f"  {name}: wrk {w.get('rps', 0):,.0f} req/s p99 {w.get('p99', 0):.1f} ms, "
                    f"{w.get('requests'):,} answered, non-2xx {w.get('non_2xx')}, socket errors "
                    f"{w.get('socket_errors')}; new connections failed {k['probes_failed']} of "
                    f"{k['probes']}")
            if "spawned_s" in k:
                text += (f"; worker 1 (up {k['uptime_s']:.0f} s) replaced after {k['spawned_s']:.2f} s, "
                         f"serving after {k['serving_s']:.2f} s; the other served "
                         f"{k['survivor_first_second']:,} requests in the second after the kill "
                         f"({k['survivor_second_before']:,} in the second before); "
                         f"killed again at once: replaced after {k['again_spawned_s']:.2f} s, "
                         f"serving after {k['again_serving_s']:.2f} s")
            else:
                text += f"; the port answered a new connection again after {k['serving_s']:.2f} s"
            print(text)
    if errors:
        print("\nstartup errors")
        for name, text in errors.items():
            print(f"  {name}: {text}")
    return 0


if __name__ == "__main__":
    common.run_main(main)

"""Where the API's Python time goes under load: py-spy on the API in the default configuration.

A Tansu broker, `python -m appliance api` and `consumer` (LOG_LEVEL=INFO: the access log to a
file), wrk -t2 -c32 on GET /, and `py-spy record --gil` on the API meanwhile: only the samples
of the thread holding the GIL, i.e. where the one core the API can use goes. Prints the share of
the samples per thread, per stage of a request (inclusive: a stage's callees count in it) and the
functions that hold the GIL themselves the most (self time).

Needs py-spy (`.venv/bin/pip install py-spy`; PyPI) and wrk. `--output FILE` keeps the raw
stacks (flamegraph.pl's collapsed format).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import common

# (stage, frame pattern): the first stage with a frame in the sample that matches names it. The
# other threads first, then from the most specific: the access log is inside the record step...
STAGES = (
    ("spool writer thread (SQLite inserts)", r"^SpoolWriter\._run \("),
    ("relay thread (spool reads, produce, reports, deletes)", r"^Relay\._run \("),
    ("log writer thread (stdout)", r"^QueueListener\._monitor \("),
    ("access log (logging: record, JSON format, queue)", r"^Logger\.info \(|^Logger\._log "),
    ("event building: make_event (ids, timestamps)", r"^make_event \("),
    ("event hand-over: emit_all (encode, spool writer put, counters)", r"emit_all \("),
    ("tracing.event_headers", r"^event_headers \("),
    ("metrics in the middleware (labels, inc, observe)",
     r"^(MutexValue|MmapedValue|.*labels|Histogram\.observe|Counter\.inc)"),
    ("middleware record step (rest)", r"^AuditMiddleware\._(record|emit_events|finish) \("),
    ("Bottle (routing, route, JSON response)", r"^Bottle\.(__call__|wsgi|_handle|_cast) \("),
    ("middleware request step (ids, client ip)", r"^AuditMiddleware\._handle \("),
    ("Waitress request handling (parse, write)",
     r"^HTTPChannel\.(service|received) \(|^WSGITask|^Task\.|^ThreadedTaskDispatcher"),
    ("Waitress main loop (select, accept, send)", r"^loop \(|^ApiServer"),
)
FRAME = re.compile(r"^(?P<func>[^ ]+) \((?P<file>[^:]+):(?P<line>\d+)\)$")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load (20)")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second (100)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an API setting, e.g. --env LOG_LEVEL=WARNING")
    parser.add_argument("--top", type=int, default=25, help="functions listed by self time (25)")
    parser.add_argument("--output", type=Path, help="keep py-spy's raw stacks in this file")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir (process logs)")
    return parser.parse_args()


def py_spy() -> str:
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not found:
        raise SystemExit("profile_api: needs py-spy (.venv/bin/pip install py-spy)")
    return found


def read_stacks(path: Path) -> list[tuple[str, list[str], int]]:
    """(thread name, frames outermost first, samples) per line of py-spy's raw output."""
    stacks = []
    for line in path.read_text().splitlines():
        head, _, count = line.rpartition(" ")
        parts = head.split(";")
        thread = re.sub(r"^thread \(\d+\): ", "", parts[0])
        stacks.append((re.sub(r"-\d+$", "-N", thread), parts[1:], int(count)))
    return stacks


def stage_of(frames: list[str]) -> str:
    for stage, pattern in STAGES:
        if any(re.search(pattern, frame) for frame in frames):
            return stage
    return "other"


def summarize(stacks: list[tuple[str, list[str], int]], top: int) -> str:
    total = sum(count for _, _, count in stacks) or 1
    threads: collections.Counter = collections.Counter()
    stages: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    for thread, frames, count in stacks:
        threads[thread] += count
        stages[stage_of(frames)] += count
        if frames:
            found = FRAME.match(frames[-1])
            own[f"{found['func']} ({found['file']})" if found else frames[-1]] += count
    out = [f"{total:,} samples holding the GIL\n",
           common.table(["thread", "% of GIL samples"],
                        [[t, f"{100 * c / total:.1f}"] for t, c in threads.most_common()]), "",
           common.table(["stage (inclusive)", "% of GIL samples"],
                        [[s, f"{100 * c / total:.1f}"] for s, c in stages.most_common()]), "",
           common.table(["function (self)", "% of GIL samples"],
                        [[f, f"{100 * c / total:.1f}"] for f, c in own.most_common(top)])]
    return "\n".join(out)


def main() -> int:
    args = parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    spy = py_spy()
    if not common.have_wrk():
        raise SystemExit("profile_api: needs wrk (apt-get install wrk)")
    print(f"profile_api: py-spy --gil -r {args.rate} on the API, wrk -t2 -c{args.connections} "
          f"-d{args.duration:g}s GET /, {extra or 'defaults'}; {common.machine()}", flush=True)
    with common.session(args.keep) as (tmp, stack):
        broker = common.start_broker(stack, tmp)
        app = common.start_api(stack, tmp / "api", broker.bootstrap, **extra)
        app.consumer.start()
        common.wait_until(lambda: app.get("/")[1].get("kafka_status") == "UP", 30, 0.2, "Kafka UP")
        url = f"http://127.0.0.1:{app.port}/"
        common.run_wrk(url, 3, args.connections)  # warm-up
        raw = args.output or tmp / "stacks.txt"
        # --subprocesses: with WEB_PROCESSES > 1 the API's pid is the parent, which only
        # watches; the workers serve (api/workers/parent.py).
        recorder = subprocess.Popen([spy, "record", "--gil", "--threads", "--subprocesses",
                                     "--rate", str(args.rate),
                                     "--format", "raw", "--duration", f"{args.duration + 1:g}",
                                     "--output", str(raw), "--pid", str(app.api.proc.pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        stack.callback(recorder.kill)
        time.sleep(0.5)
        result = common.run_wrk(url, args.duration, args.connections)
        _, errors = recorder.communicate(timeout=60)
        print(f"under the profiler: {result['rps']:,.0f} req/s, p99 {result['p99']:.1f} ms "
              f"(py-spy pauses the process for each sample: slower than without it)")
        if not raw.exists():
            raise SystemExit(f"py-spy wrote nothing:\n{errors}")
        print(summarize(read_stacks(raw), args.top))
    return 0


if __name__ == "__main__":
    common.run_main(main)

"""CPU per request of the API's WSGI app, without Waitress and without the network.

The app is built as the API program builds it (middleware, Bottle, routes, the real event sink
with its spool writer and relay threads, a Tansu broker, metrics in multiprocess mode, the JSON
log to a file) and called in a loop from one thread with the environ of `GET /`. The figure is
the process's CPU time (every thread: the spool writer, the relay, the log writer included, up
to the moment everything handed over was delivered) per request, in microseconds. Far less
noisy than req/s on a shared machine: use it to see what one change to the request path buys.

Variants: Kafka off or up (with a real broker), LOG_LEVEL INFO (an access line per request) or
WARNING; the bare WSGI app of bench/common.py is the floor of the loop itself.
`--cprofile` prints the functions of the Kafka up + INFO variant by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import os
import pstats
import re
import sys
import threading
import time

import common

from appliance.core import logs, metrics, sensors
from appliance.core.config import Settings

TICKS = os.sysconf("SC_CLK_TCK")
VARIANTS = ("bare app", "kafka off WARNING", "kafka off INFO", "kafka up WARNING", "kafka up INFO")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000, help="requests per run (20000)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each variant (3)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=", ".join(VARIANTS))
    parser.add_argument("--cprofile", action="store_true",
                        help="profile one run of 'kafka up INFO' and print the top functions")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir")
    return parser.parse_args()


def environ() -> dict:
    return {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "QUERY_STRING": "", "SCRIPT_NAME": "",
            "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "40000", "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "127.0.0.1:8080",
            "HTTP_USER_AGENT": "wrk", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False,
            "wsgi.run_once": False, "wsgi.version": (1, 0)}


def start_response(status, headers, exc_info=None):
    return lambda data: None


def build(variant: str, tmp, broker):
    """(the WSGI app, a function that waits until every event was delivered, a closer)."""
    if variant == "bare app":
        return common.bare_app, lambda: None, lambda: None
    from appliance.api.http.app import create_app
    from appliance.api.http.services import Services
    from appliance.api.main import build_sink
    from appliance.pipeline.producer.factory import ProducerFactory
    kafka, level = variant.split()[1:]
    directory = tmp / variant.replace(" ", "-")
    settings = Settings.from_env({"DATA_DIR": str(directory), "LOG_LEVEL": level,
                                  "KAFKA_BROKERS": broker.bootstrap if kafka == "up" else ""})
    sink = build_sink(settings, None, ProducerFactory(settings))
    sink.start()
    app = create_app(settings, Services(settings, sink=sink))

    def drained() -> None:
        if sink.enabled:
            sink.flush(30)

    return app, drained, sink.close


def thread_cpu() -> dict[str, float]:
    """CPU seconds of each thread of this process, by thread name (from /proc)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    found: dict[str, float] = {}
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = re.sub(r"-\d+$", "", names.get(int(task), "native (librdkafka, sqlite)"))
        found[name] = found.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TICKS
    return found


def run(variant: str, built, count: int, threads: dict | None = None) -> float:
    """CPU µs per request, every thread of this process counted; with ``threads``, add each
    thread's µs per request to it."""
    app, drained, _ = built
    logging.getLogger().setLevel(variant.split()[-1] if variant != "bare app" else "WARNING")
    base = environ()
    before = thread_cpu()
    cpu = time.process_time()
    for _ in range(count):
        env = dict(base)
        for _chunk in app(env, start_response):
            pass
    drained()
    spent = (time.process_time() - cpu) / count * 1e6
    if threads is not None:
        for name, seconds in thread_cpu().items():
            threads.setdefault(name, []).append((seconds - before.get(name, 0.0)) / count * 1e6)
    return spent


def main() -> int:
    args = parse_args()
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    print(f"request_cost: {args.requests:,} x GET / in-process, {args.rounds} rounds; "
          f"{common.machine()}", flush=True)
    with common.session(args.keep) as (tmp, stack):
        broker = common.start_broker(stack, tmp)
        if metrics.init(tmp / "metrics"):
            sensors.start("api", "bench")
        log_file = open(tmp / "access.log", "w")  # one JSON log for the process, as in the API
        stack.callback(log_file.close)
        stack.callback(logs.flush)
        logs.configure("INFO", stream=log_file)  # each run sets the root level of its variant
        results: dict[str, list[float]] = {n: [] for n in names}
        threads: dict[str, dict[str, list[float]]] = {n: {} for n in names}
        built = {}
        for name in names:
            built[name] = build(name, tmp, broker)
            stack.callback(built[name][2])
        for name in names:  # warm-up: topic, connections, caches
            run(name, built[name], 2000)
        for _ in range(args.rounds):
            for name in names:
                results[name].append(run(name, built[name], args.requests, threads[name]))
        floor = common.median(results[names[0]])
        print(common.table(["variant", "CPU µs/request", "min-max", f"x {names[0]}"],
                           [[n, f"{common.median(v):.1f}", f"{min(v):.1f}-{max(v):.1f}",
                             f"{common.median(v) / floor:.2f}"] for n, v in results.items()]))
        print("\nCPU µs per request by thread (median; /proc ticks of 10 ms: +-1 tick per run)")
        for name in names:
            split = ", ".join(f"{t} {common.median(v):.1f}" for t, v in
                              sorted(threads[name].items(), key=lambda kv: -common.median(kv[1]))
                              if common.median(v) >= 0.5)
            print(f"  {name}: {split}")
        if args.cprofile:
            name = "kafka up INFO"
            target = built.get(name) or build(name, tmp, broker)
            profiler = cProfile.Profile()
            profiler.enable()
            run(name, target, args.requests)
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(35)
            print(out.getvalue())
    return 0


if __name__ == "__main__":
    common.run_main(main)

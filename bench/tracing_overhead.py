"""GET / latency with tracing off, with a live OTLP collector, and with the collector down.

Kafka is off in every variant, so only tracing differs. The collector is the tests' real
OTLP/gRPC receiver (tests/otlp.py) running in this process; "collector down" points the
exporter at a closed port. The baseline is the same API with tracing off, alternated with each
variant (A B A C A ...), and ratios use the baseline runs right before and after each run.
"""

from __future__ import annotations

import argparse

import common
import http_throughput as ht
from otlp import Receiver

BASE = "tracing off"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections (16)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    load = common.run_wrk if common.have_wrk() else common.run_python_load
    print(f"tracing_overhead: GET /, {'wrk' if common.have_wrk() else 'python'} "
          f"-c{args.connections} -d{args.duration:g}s; Kafka off; {common.machine()}")
    with common.session() as (tmp, stack):
        receiver = Receiver().start()
        stack.callback(receiver.stop)
        endpoints = {BASE: None, "collector up": receiver.endpoint,
                     "collector down": f"http://127.0.0.1:{common.free_port()}"}
        urls = {}
        for name, endpoint in endpoints.items():
            env = {"LOG_LEVEL": "WARNING"}
            if endpoint:
                env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
            app = common.start_api(stack, tmp / name.replace(" ", "_"), None, **env)
            urls[name] = f"http://127.0.0.1:{app.port}/"
        names = ["collector up", "collector down"]
        runs = ht.measure_all(urls, ht.schedule(names, args.rounds, BASE), load, args.duration,
                              args.connections)
        print()
        print(ht.summarize(runs, names, BASE))
        print(f"\nspans received by the live collector: {len(receiver.snapshot()):,}")
    return 0


if __name__ == "__main__":
    common.run_main(main)

"""Embedded broker memory under sustained load, with the agent's recycling at a limit.

Runs the whole appliance (`simple-time-service up`, KAFKA_BROKERS=embedded) with
EMBEDDED_BROKER_MAX_MB, publishes events of --size bytes for --duration seconds, samples the
broker's RSS every second and prints the curve, the recycles, and whether every accepted event
was persisted exactly once (rows == accepted, no duplicates).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time

import common

from appliance import supervise
from appliance.agent.processes import rss_mb
from appliance.core.config import Settings


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (60)")
    parser.add_argument("--limit-mb", type=float, default=64.0, help="EMBEDDED_BROKER_MAX_MB (64)")
    parser.add_argument("--size", type=int, default=4000, help="payload bytes per event (4000)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir (process logs)")
    return parser.parse_args()


def publisher(port: int, size: int, stop: threading.Event, accepted: list[str]) -> None:
    # Random payloads: events are sent lz4-compressed, and "x" * size would shrink to nothing.
    blobs = [os.urandom(size // 2).hex() for _ in range(64)]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    sent = 0
    while not stop.is_set():
        body = json.dumps({"event_type": "bench.blob",
                           "payload": {"blob": blobs[sent % len(blobs)], "i": sent}}).encode()
        sent += 1
        conn.request("POST", "/kafka/publish", body,
                     {"Content-Type": "application/json", **common.AUTHORIZATION})
        response = conn.getresponse()
        answer = json.loads(response.read())
        if response.status == 202:
            accepted.append(answer["event_id"])


def kafka_up(app: common.Appliance) -> bool:
    try:
        return app.get("/")[1].get("kafka_status") == "UP"
    except OSError:  # not listening yet
        return False


def main() -> int:
    args = parse_args()
    print(f"broker_memory: limit {args.limit_mb:g} MB, {args.size} B events, {args.duration:g} s; "
          f"{common.machine()}")
    with common.session(args.keep) as (tmp, stack):
        common.require_broker_binary()
        app = common.Appliance(tmp, "embedded", EMBEDDED_BROKER_PORT=str(common.free_port()),
                               EMBEDDED_BROKER_MAX_MB=str(args.limit_mb), STATUS_INTERVAL="1",
                               LOG_LEVEL="WARNING", RATE_LIMIT_WRITES="0")  # as fast as it takes
        up = common.Process([sys.executable, "-m", "appliance", "up"], app.env, tmp / "up.log")
        stack.callback(up.stop, 60)
        up.start()
        control = supervise.client(Settings(data_dir=app.data_dir)).supervisor
        common.wait_until(lambda: kafka_up(app), 60, 0.5, "Kafka UP")
        accepted: list[str] = []
        stop = threading.Event()
        workers = [threading.Thread(target=publisher, args=(app.port, args.size, stop, accepted))
                   for _ in range(2)]
        for worker in workers:
            worker.start()
        stack.callback(stop.set)
        pids, started = set(), time.monotonic()
        print(f"{'t s':>5} {'broker RSS MB':>14} {'recycles':>9} {'accepted':>9} {'persisted':>10}")
        while time.monotonic() - started < args.duration:
            pid = control.getProcessInfo("broker")["pid"]
            pids.add(pid)
            t = time.monotonic() - started
            if int(t) % 5 == 0:
                print(f"{t:5.0f} {rss_mb(pid) if pid else 0:14.1f} {len(pids) - 1:9d} "
                      f"{len(accepted):9,d} {app.count('custom_events'):10,d}", flush=True)
            time.sleep(1)
        stop.set()
        for worker in workers:
            worker.join(15)
        common.wait_until(lambda: app.count("custom_events") >= len(accepted), 120, 0.5,
                          "every accepted event persisted")
        rows = [r[0] for r in app.rows("SELECT event_id FROM custom_events")]
        print(f"\naccepted {len(accepted):,}, rows {len(rows):,}, distinct {len(set(rows)):,}, "
              f"missing {len(set(accepted) - set(rows)):,}; broker recycled {len(pids) - 1} times; "
              f"final RSS {rss_mb(control.getProcessInfo('broker')['pid']):.1f} MB")
    return 0


if __name__ == "__main__":
    common.run_main(main)

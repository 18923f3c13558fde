"""GET / requests/s and p50/p99 latency of the real API against a bare Waitress app.

Variants: the real API (`python -m appliance api`, 8 Waitress threads) with Kafka UP (a real
Tansu broker), Kafka DOWN (KAFKA_BROKERS points at a closed port: events go to the disk spool),
Kafka OFF (KAFKA_BROKERS empty), and Kafka UP with LOG_LEVEL=INFO (one access line per request
written to a log file). The baseline is a trivial WSGI app on the same Waitress settings.

All servers run at once (idle ones cost next to nothing); the load alternates
bare, variant, bare, variant, ... and ends with bare, so every variant run has a baseline run
right before and right after it. Throughput drifts on these shared machines (a bare
WSGI app went from 6.9k to 4.4k req/s within 30 s with nothing else running), so each ratio uses
the mean of those two neighbours, and the summary gives the median over rounds.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import common

# name -> (Kafka mode, LOG_LEVEL, other settings); the default set, then the ones to choose
VARIANTS = {
    "api kafka-up": ("up", "WARNING", {}),
    "api kafka-down": ("down", "WARNING", {}),
    "api kafka-off": ("off", "WARNING", {}),
    "api kafka-up INFO": ("up", "INFO", {}),
    "api up sync": ("up", "WARNING", {"EVENT_DURABILITY": "sync"}),
    "api up async": ("up", "WARNING", {"EVENT_DURABILITY": "async"}),
    "api down sync": ("down", "WARNING", {"EVENT_DURABILITY": "sync"}),
    "api down async": ("down", "WARNING", {"EVENT_DURABILITY": "async"}),
}
DEFAULT_VARIANTS = ["api kafka-up", "api kafka-down", "api kafka-off", "api kafka-up INFO"]
BASE = "bare waitress"
OTHER_TREE = "api @other-tree"  # --other-tree: the API of another checkout, Kafka up


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of A B A C ... (default 3)")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections (32)")
    parser.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto",
                        help="load generator: wrk -t2 if installed (auto), else Python threads")
    parser.add_argument("--no-info", action="store_true", help="skip the LOG_LEVEL=INFO variant")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--other-tree", type=Path, metavar="DIR",
                        help="also measure the API of another checkout (e.g. a git worktree of an "
                             "older commit), Kafka up, LOG_LEVEL=WARNING")
    parser.add_argument("--other-tree-log-level", default="WARNING", metavar="LEVEL",
                        help="LOG_LEVEL of the --other-tree API (WARNING; INFO: the default "
                             "configuration, compared with the variant 'api kafka-up INFO')")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir (process logs)")
    return parser.parse_args()


def start_servers(stack: contextlib.ExitStack, tmp: Path, names: list[str], other_tree: Path | None,
                  other_level: str = "WARNING"):
    urls = {BASE: f"http://127.0.0.1:{common.start_bare_app(stack, tmp)}/"}
    broker = common.start_broker(stack, tmp)
    apps = {}
    for name in names:
        mode, level, extra = VARIANTS[name] if name != OTHER_TREE else ("up", other_level, {})
        brokers = {"up": broker.bootstrap, "down": f"127.0.0.1:{common.free_port()}", "off": ""}[mode]
        app = common.start_api(stack, tmp / name.replace(" ", "_").replace("@", ""), brokers,
                               cwd=other_tree if name == OTHER_TREE else None,
                               LOG_LEVEL=level, **extra)
        _check_mode(app, name, mode)
        urls[name], apps[name] = f"http://127.0.0.1:{app.port}/", app
    return urls, apps


def _check_mode(app: common.Appliance, name: str, mode: str) -> None:
    # Measure the path we mean to measure: UP must really be connected, DOWN must not be.
    status, body = app.get("/")
    expected = "UP" if mode == "up" else "NOT UP"
    if status != 200 or body.get("kafka_status") != expected:
        raise SystemExit(f"{name}: expected kafka_status {expected}, got {status} {body}")


def schedule(names: list[str], rounds: int, base: str = BASE) -> list[str]:
    order = []
    for _ in range(rounds):
        for name in names:
            order += [base, name]
    return order + [base]


def measure_all(urls: dict, order: list[str], load, seconds: float, connections: int) -> list:
    for url in urls.values():  # warm-up: first connections, lazy imports, caches
        load(url, 1, connections=connections)
    runs = []
    for i, name in enumerate(order, 1):
        result = load(urls[name], seconds, connections=connections)
        runs.append((name, result))
        print(f"  [{i:2}/{len(order)}] {name:18} {result['rps']:8,.0f} req/s  p50 {result['p50']:6.2f} ms"
              f"  p99 {result['p99']:6.2f} ms  errors {result['errors']}", flush=True)
    return runs


def summarize(runs: list, names: list[str], base_name: str = BASE) -> str:
    base = [r for n, r in runs if n == base_name]
    rows = [[base_name, common.median([r["rps"] for r in base]), common.median([r["p50"] for r in base]),
             common.median([r["p99"] for r in base]), "1 (baseline)", "1", "1",
             f"{min(r['rps'] for r in base):,.0f}-{max(r['rps'] for r in base):,.0f}"]]
    for name in names:
        mine, ratios = [], {"rps": [], "p50": [], "p99": []}
        for i, (n, result) in enumerate(runs):
            if n != name:
                continue
            before, after = runs[i - 1][1], runs[i + 1][1]  # the schedule puts bare on both sides
            mine.append(result)
            for key in ratios:
                ratios[key].append(result[key] / ((before[key] + after[key]) / 2))
        rps = ratios["rps"]
        rows.append([name, common.median([r["rps"] for r in mine]),
                     common.median([r["p50"] for r in mine]), common.median([r["p99"] for r in mine]),
                     f"{common.median(rps):.2f} ({min(rps):.2f}-{max(rps):.2f})",
                     f"{common.median(ratios['p50']):.2f}", f"{common.median(ratios['p99']):.2f}",
                     f"{min(r['rps'] for r in mine):,.0f}-{max(r['rps'] for r in mine):,.0f}"])
    return common.table(["server", "req/s", "p50 ms", "p99 ms", "req/s ratio (min-max)",
                         "p50 ratio", "p99 ratio", "req/s range"], rows)


def kafka_counters(apps: dict) -> list[str]:
    lines = []
    for name, app in apps.items():
        if VARIANTS.get(name, ("up",))[0] == "off":
            continue
        _, body, _ = app.request("GET", "/kafka/status")
        fields = ("state", "queued", "delivered", "spooled", "lost", "in_queue", "spool_depth")
        lines.append(f"  {name:18} " + " ".join(f"{k}={body.get(k)}" for k in fields))
    return lines


def main() -> int:
    args = parse_args()
    names = [n for n in args.variants.split(",") if not (args.no_info and "INFO" in n)]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants: {unknown}")
    if args.other_tree:
        names.append(OTHER_TREE)
    use_wrk = args.tool == "wrk" or (args.tool == "auto" and common.have_wrk())
    load = common.run_wrk if use_wrk else common.run_python_load
    tool = (f"wrk -t2 -c{args.connections} -d{args.duration:g}s --latency" if use_wrk
            else f"Python load generator ({args.connections} threads, http.client keep-alive)")
    print(f"http_throughput: GET /, {tool}; Waitress 8 threads; {common.machine()}")
    with common.session(args.keep) as (tmp, stack):
        urls, apps = start_servers(stack, tmp, names, args.other_tree, args.other_tree_log_level)
        runs = measure_all(urls, schedule(names, args.rounds), load, args.duration, args.connections)
        print()
        print(summarize(runs, names))
        print("\nratios: variant / mean of the bare runs just before and after it; median over "
              f"{args.rounds} rounds.\nKafka counters after the runs:")
        print("\n".join(kafka_counters(apps)))
    return 0


if __name__ == "__main__":
    common.run_main(main)

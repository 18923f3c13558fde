"""Snapshots of the dashboard's main states at 80x24 (pytest-textual-snapshot).

A fake client with fixed answers and a fixed clock make every screenshot the same on every run:
nothing here talks to a network. ``--snapshot-update`` rewrites the SVGs under __snapshots__/
after a deliberate change; look at them first (the failure report links a side-by-side diff).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from dashboard.app import DashboardApp
from dashboard.client import ApplianceClient, ApplianceError

NOW = datetime(2026, 2, 3, 10, 30, 45, tzinfo=timezone.utc)
INTERVAL = 60.0  # no poll of its own during a screenshot: only the ones run_before asks for
SCRAPES = 12  # successive /metrics answers in the all-up state, STEP seconds apart
STEP = 30.0


def stamp(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FixedClock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now.timestamp()

    def __call__(self) -> float:
        return self.now


class FakeClient(ApplianceClient):
    """Answers from a dict path -> body (bytes, a JSON-able object, an ApplianceError, or a list
    of those served one per call, the last one repeated)."""

    def __init__(self, answers: dict[str, Any]) -> None:
        super().__init__("http://10.0.0.5:8080")
        self.answers = answers

    def get(self, path: str) -> bytes:
        missing = ApplianceError(ApplianceError.HTTP, f"GET {path}: 404", 404)
        answer = self.answers.get(path.split("?")[0], missing)
        if isinstance(answer, list):
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        if isinstance(answer, ApplianceError):
            raise answer
        return answer if isinstance(answer, bytes) else json.dumps(answer).encode()


def component(state: str, detail: str, since_s: float, data: dict | None = None) -> dict[str, Any]:
    return {"state": state, "detail": detail, "since": stamp(since_s), "checked_at": stamp(1),
            "data": data or {}}


def all_up_components() -> dict[str, Any]:
    return {
        "api": component("UP", "answers /healthz", 7260),
        "kafka": component("UP", "3 partitions, lag 2", 7260, {"partitions": 3, "lag_total": 2}),
        "database": component("UP", f"{rows_at(1)} rows, newest {stamp(1)}", 7260,
                              {"rows": {"http_responses": rows_at(1)}}),
        "spool": component("UP", "empty", 7260, {"depth": 0, "dropped": 0}),
        "otel": component("UP", "collector otel:4317 accepts connections", 3600),
        "prometheus": component("DISABLED", "PROMETHEUS_URL not set", 7260),
        "process.api": component("UP", "running: pid 41, uptime 2:01:00", 7260),
        "process.consumer": component("UP", "running: pid 42; 3 partitions assigned", 7200),
        "process.agent": component("UP", "running: pid 43, uptime 2:01:00", 7260),
        "process.broker": component("UP", "running: pid 40, uptime 2:01:00", 7265),
    }


def rows_at(seconds_ago: float) -> int:
    """Rows in the database: ~100 events/s, a little faster now and then."""
    elapsed = 600 - seconds_ago
    return int(120_000 + 100 * elapsed + 400 * (int(elapsed) // 90))


def history() -> dict[str, list]:
    """Ten minutes of agent rounds every 10 s."""
    rounds = range(60, 0, -1)
    return {
        "kafka": [[stamp(10 * i), "UP", {"lag_total": [0, 3, 12, 40, 18, 5][i % 6]}] for i in rounds],
        "spool": [[stamp(10 * i), "UP", {"depth": 0}] for i in rounds],
        "database": [[stamp(10 * i), "UP", {"rows": {"http_responses": rows_at(10 * i)}}] for i in rounds],
    }


def status(components: dict[str, Any], overall: str, with_history: bool = True) -> dict[str, Any]:
    body = {"version": "0.1.0", "hostname": "web-1", "api_uptime_s": 7261.4, "overall": overall,
            "stale": False, "components": components,
            "agent": {"state": "UP", "detail": "reported 1.2 s ago", "age_s": 1.2, "interval_s": 5.0}}
    if with_history:
        body["history"] = history()
    return body


# What happened in each 30 s between two scrapes of the all-up state.
REQUESTS = (1250, 1400, 1320, 1600, 1900, 1750, 1500, 1380, 1450, 1620, 1700)
ERRORS = (0, 2, 0, 1, 9, 14, 3, 0, 0, 1, 2)
SLOW = (0.02, 0.03, 0.02, 0.05, 0.09, 0.12, 0.04, 0.03, 0.02, 0.03, 0.04)  # share over 5 ms
LAG = (2, 9, 4, 0, 3, 31, 12, 1, 0, 3, 1, 2)


def metrics_text(step: int) -> bytes:
    """The counters after ``step`` intervals: ~50 req/s, a burst of 5xx and latency midway."""
    requests = 90_000 + sum(REQUESTS[:step])
    errors = 40 + sum(ERRORS[:step])
    slow = 1_800 + sum(n * share for n, share in zip(REQUESTS[:step], SLOW))
    lines = [
        "# TYPE http_requests_total counter",
        f'http_requests_total{{method="GET",route="/",status="200"}} {requests - errors}',
        f'http_requests_total{{method="GET",route="/",status="503"}} {errors}',
        "# TYPE http_request_duration_seconds histogram",
        f'http_request_duration_seconds_bucket{{le="0.005",method="GET",route="/"}} {requests - slow}',
        f'http_request_duration_seconds_bucket{{le="0.025",method="GET",route="/"}} {requests - slow / 10}',
        f'http_request_duration_seconds_bucket{{le="+Inf",method="GET",route="/"}} {requests}',
        f'http_request_duration_seconds_count{{method="GET",route="/"}} {requests}',
        f'http_request_duration_seconds_sum{{method="GET",route="/"}} {requests * 0.003}',
        "# TYPE consumer_events_persisted_total counter",
        f'consumer_events_persisted_total{{table="http_responses"}} {2 * requests - LAG[step] - 500}',
        "# TYPE consumer_lag gauge",
        f'consumer_lag{{partition="0"}} {LAG[step]}',
        "# TYPE spool_depth gauge",
        "spool_depth 0",
    ]
    return ("\n".join(lines) + "\n").encode()


def events() -> dict[str, Any]:
    rows = []
    for i, (method, path, code) in enumerate([("GET", "/", 200), ("GET", "/version", 200),
                                              ("POST", "/kafka/publish", 202), ("GET", "/nope", 404),
                                              ("GET", "/", 503), ("GET", "/", 200)]):
        rows.append({"event_type": "http_response", "event_id": f"00000000-0000-4000-8000-00000000000{i}",
                     "request_id": f"req-{i:04d}", "occurred_at": stamp(60 - 5 * i), "trace_id": None,
                     "hostname": "web-1", "persisted_at": stamp(59 - 5 * i), "method": method,
                     "route": path, "path": path, "query": "", "status": code, "duration_ms": 1.5 + i,
                     "user_ip": f"203.0.113.{10 + i}", "proxy_chain": "", "user_agent": "curl/8.0",
                     "bytes": 212})
    rows.append({"event_type": "deploy.finished", "event_id": "00000000-0000-4000-8000-000000000009",
                 "request_id": "req-0009", "occurred_at": stamp(3), "trace_id": None,
                 "hostname": "web-1", "persisted_at": stamp(2),
                 "payload": {"version": "1.4.2", "by": "ci"}})
    rows.reverse()  # newest first, as /events answers
    return {"events": rows, "count": len(rows), "limit": 100}


def stats() -> dict[str, Any]:
    """/events/stats of the last hour of the all-up state: ~50 answers/s from a few clients."""
    clients = (52_310, 40_112, 22_004, 9_870, 5_001, 1_200, 640, 320, 101, 12)
    return {
        "since": stamp(3600), "until": stamp(0), "total": 361_204,
        "by_type": {"http_request": 180_000, "http_response": 180_000, "error": 160,
                    "deploy.finished": 3, "dead_letter": 1},
        "by_status_class": {"2xx": 171_950, "3xx": 12, "4xx": 7_878, "5xx": 160},
        "top_clients": [{"user_ip": f"203.0.113.{10 + i}", "count": n} for i, n in enumerate(clients)],
        "top_routes": [{"route": route, "count": n} for route, n in (
            ("/", 120_400), ("/version", 40_100), ("/kafka/publish", 12_000), ("/events", 6_800),
            ("/nope", 700))],
        "top_proxy_chains": [{"proxy_chain": "10.0.0.2", "count": 30_000},
                             {"proxy_chain": "10.0.0.3, 10.0.0.2", "count": 4_100}],
        "duration_ms": {"p50": 1.21, "p95": 4.87, "p99": 18.3},
    }


def all_up_answers() -> dict[str, Any]:
    return {"/status": status(all_up_components(), "UP"),
            "/version": {"version": "0.1.0", "python": "3.11.7", "commit": "3f2c1ab"},
            "/events": events(),
            "/events/stats": stats(),
            "/metrics": [metrics_text(step) for step in range(SCRAPES)]}


def kafka_down_answers() -> dict[str, Any]:
    components = all_up_components()
    components["kafka"] = component("DOWN", "broker 10.0.0.9:9092 not reachable: Connection refused", 95)
    components["spool"] = component("DEGRADED", "1840 events waiting for Kafka", 93, {"depth": 1840})
    components["process.broker"] = component("DOWN", "fatal: Exited too quickly", 95)
    components["process.consumer"] = component("DEGRADED", "running: pid 42; no partitions assigned yet",
                                               90)
    answers = all_up_answers()
    body = status(components, "DOWN")
    history = body["history"]
    history["kafka"] = [row if i > 95 else [row[0], "DOWN", {}]  # no lag while it is down
                        for i, row in zip(range(600, 0, -10), history["kafka"])]
    history["database"] = [[stamp(i), "UP", {"rows": {"http_responses": rows_at(max(i, 95))}}]
                           for i in range(600, 0, -10)]  # nothing persisted since Kafka went
    components["database"].update(detail=f"{rows_at(95)} rows, newest {stamp(95)}",
                                  data={"rows": {"http_responses": rows_at(95)}})
    body["history"]["spool"] = [[stamp(10 * i), "DEGRADED", {"depth": max(0, 1840 - 20 * i)}]
                                for i in range(9, 0, -1)]
    answers["/status"] = body
    del answers["/metrics"]  # an appliance without /metrics: figures fall back to /status
    return answers


def make_app(answers: dict[str, Any], polls: int = 0) -> tuple[DashboardApp, FixedClock]:
    """The app and its clock, set so that after ``polls`` more polls it is NOW."""
    clock = FixedClock(NOW - timedelta(seconds=STEP * polls))
    return DashboardApp(FakeClient(answers), interval=INTERVAL, clock=clock), clock


async def settle(pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def polls(clock: FixedClock, count: int):
    """run_before: the first poll, then ``count`` more, STEP seconds apart on the fixed clock."""
    async def run_before(pilot) -> None:
        await settle(pilot)
        for _ in range(count):
            clock.now += STEP
            pilot.app.screen.poll()
            await settle(pilot)
    return run_before


def test_all_up(snap_compare):
    app, clock = make_app(all_up_answers(), SCRAPES - 1)
    assert snap_compare(app, run_before=polls(clock, SCRAPES - 1))


def test_kafka_down(snap_compare):
    app, clock = make_app(kafka_down_answers())
    assert snap_compare(app, run_before=polls(clock, 0))


def test_appliance_unreachable(snap_compare):
    refused = ApplianceError(ApplianceError.UNREACHABLE, "connection refused")
    app, clock = make_app({"/status": refused, "/version": refused, "/events": refused})
    assert snap_compare(app, run_before=polls(clock, 0))


def test_event_detail_view(snap_compare):
    app, clock = make_app(all_up_answers())
    assert snap_compare(app, press=["enter"], run_before=polls(clock, 0))


def test_stats_screen(snap_compare):
    app, clock = make_app(all_up_answers())

    async def run_before(pilot) -> None:
        await polls(clock, 0)(pilot)
        await pilot.press("s")
        await settle(pilot)  # the stats screen's own worker has answered
    assert snap_compare(app, run_before=run_before)


def test_help(snap_compare):
    app, clock = make_app(all_up_answers())
    assert snap_compare(app, press=["question_mark"], run_before=polls(clock, 0))


async def _save(app: DashboardApp, clock: FixedClock, path: Path, size: tuple[int, int],
                press: tuple[str, ...]) -> None:
    async with app.run_test(size=size) as pilot:
        await polls(clock, SCRAPES - 1)(pilot)
        await pilot.press(*press)
        await settle(pilot)
        app.save_screenshot(filename=path.name, path=str(path.parent))


README_PICTURES = (("docs/dashboard.svg", ()), ("docs/dashboard-stats.svg", ("s",)))


def save_readme_screenshot(size: tuple[int, int] = (100, 30)) -> None:
    """The README's pictures: the all-up state, and its stats screen (run from the repository
    root, see the README's Dashboard section)."""
    import asyncio

    for path, press in README_PICTURES:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        app, clock = make_app(all_up_answers(), SCRAPES - 1)
        asyncio.run(_save(app, clock, target, size, press))

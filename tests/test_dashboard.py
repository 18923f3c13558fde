"""The dashboard driven by Textual's Pilot against the real API.

The appliance is the real ``python -m appliance api`` under Waitress on a free 127.0.0.1 port,
its DATA_DIR in tmp_path. No Kafka: the events and status databases are written here with the
project's own models (appliance.store, appliance.status_store), which is what the consumer and
the agent would have written, so /events and /status answer real rows. Assertions read the
rendered screen as text, as a person would.
"""

from __future__ import annotations

import asyncio
import http.server
import io
import json
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import quote

import pytest
from procs import TEST_TOKEN, launch_api, run_cli
from rich.console import Console
from test_dashboard_snapshots import NOW, FakeClient, FixedClock
from textual.app import App
from textual.widgets import DataTable

from appliance import cli
from appliance.agent import status_writer
from appliance.core.timefmt import iso
from appliance.pipeline.consumer import store
from appliance.schema import audit_db, status_db
from dashboard.app import DashboardApp
from dashboard.client import ApplianceClient, ApplianceError
from dashboard.metrics import Scrape, parse_scrape, quantile, rates
from dashboard.screens.detail import EventDetailScreen
from dashboard.screens.main import MainScreen
from dashboard.screens.stats import StatsScreen
from dashboard.state import DashboardState, Reading
from dashboard.widgets import events as events_widget
from dashboard.widgets.events import EventsTable

pytestmark = pytest.mark.e2e

INTERVAL = 0.25  # seconds between polls: fast tests
WAIT = 10.0  # seconds any one expected change gets to show on screen
SCENARIO_TIMEOUT = 60.0  # seconds a whole Pilot scenario gets
SIZE = (120, 40)
TOKEN = "dashboard-test-token"

ALL_UP = {
    "api": ("UP", "answers /healthz", {}),
    "kafka": ("DOWN", "broker 127.0.0.1:9 refused", {}),
    "database": ("UP", "42 rows", {"rows": {"http_responses": 42}}),
    "spool": ("DEGRADED", "12 events waiting", {"depth": 12, "dropped": 0}),
    "otel": ("DISABLED", "no collector set", {}),
    "prometheus": ("UP", "scraping this appliance", {}),
    "process.consumer": ("UP", "running: pid 42", {}),
}


# --- writing what the consumer and the agent would have written ------------------------------


def now_iso(seconds_ago: float = 0.0) -> str:
    return iso(datetime.now(timezone.utc) - timedelta(seconds=seconds_ago))


def record_status(data_dir: Path, results: dict[str, tuple[str, str, dict]]) -> None:
    db = status_db.connect(data_dir / "status.db")
    try:
        # interval 60 s: the agent counts as alive for the whole test
        status_writer.record(results, datetime.now(timezone.utc), 60.0, "0.1.0")
    finally:
        db.close()


def http_response(path: str = "/", status: int = 200, seconds_ago: float = 0.0,
                  user_ip: str = "203.0.113.7") -> tuple[type, dict]:
    at = now_iso(seconds_ago)
    return audit_db.HttpResponse, {
        "event_id": str(uuid.uuid4()), "request_id": f"req-{uuid.uuid4().hex[:12]}",
        "occurred_at": at, "hostname": "web-1", "persisted_at": at, "method": "GET",
        "route": path, "path": path, "user_ip": user_ip, "status": status,
        "duration_ms": 0.5, "bytes": 100}


def custom_event(event_type: str, payload: dict, seconds_ago: float = 0.0) -> tuple[type, dict]:
    at = now_iso(seconds_ago)
    return audit_db.CustomEvent, {
        "event_id": str(uuid.uuid4()), "request_id": f"req-{uuid.uuid4().hex[:12]}",
        "occurred_at": at, "hostname": "web-1", "persisted_at": at, "event_type": event_type,
        "payload": json.dumps(payload)}


def insert_events(data_dir: Path, *rows: tuple[type, dict]) -> None:
    events_db = store.Store(data_dir / "events.db")
    db = events_db.open()
    try:
        with db.atomic():
            for model, fields in rows:
                model.create(**fields)
    finally:
        events_db.close()


# --- fixtures and Pilot helpers -----------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    directory.mkdir()
    record_status(directory, ALL_UP)
    insert_events(directory, *(http_response(f"/seeded/{i}", seconds_ago=60 - i) for i in range(3)))
    return directory


@pytest.fixture
def appliance(data_dir: Path):
    server = launch_api(data_dir)
    try:
        yield server
    finally:
        server.stop()


def dashboard(url: str, token: str | None = TEST_TOKEN) -> DashboardApp:
    return DashboardApp(ApplianceClient(url, token), interval=INTERVAL)


def screen_text(app: DashboardApp) -> str:
    """What the terminal shows right now, as plain text."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True,
                      legacy_windows=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


def flat_text(app: DashboardApp) -> str:
    """The screen's words in one line: a banner wrapped at the width reads as one sentence."""
    return " ".join(screen_text(app).split())


def line_with(app: DashboardApp, needle: str) -> str:
    return next((line for line in screen_text(app).splitlines() if needle in line), "")


async def until(pilot, predicate: Callable[[], Any], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; the screen:\n"
                         f"{screen_text(pilot.app)}")


def run(scenario) -> None:
    asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT))


def events_table(app: DashboardApp) -> DataTable:
    return app.screen.query_one("#events-table", DataTable)


class RecordingClient(ApplianceClient):
    """The real client, noting each path it asks, and for /status how many history rounds
    came back."""

    def __init__(self, base_url: str, token: str | None = TEST_TOKEN) -> None:
        super().__init__(base_url, token)
        self.paths: list[str] = []
        self.asked: list[tuple[str, int]] = []  # (a /status path, history rounds in its answer)

    def get_json(self, path: str) -> dict[str, Any]:
        self.paths.append(path)
        document = super().get_json(path)
        if path.startswith("/status"):
            rounds = {row[0] for rows in document.get("history", {}).values() for row in rows}
            self.asked.append((path, len(rounds)))
        return document


# --- against the real appliance -------------------------------------------------------------


def test_health_panel_shows_each_state_the_status_endpoint_reports(appliance):
    async def scenario():
        app = dashboard(appliance.url)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "Kafka" in screen_text(app), "the health panel")
            assert "✖ DOWN" in line_with(app, "Kafka")
            assert "broker 127.0.0.1:9 refused" in line_with(app, "Kafka")
            assert "▲ DEGRADED" in line_with(app, "Spool")
            assert "12 events waiting" in line_with(app, "Spool")
            assert "– DISABLED" in line_with(app, "OpenTelemetry")
            assert "✔ UP" in line_with(app, "Prometheus")
            assert "✔ UP" in line_with(app, "proc consumer")
            assert "Health ✖ DOWN" in screen_text(app)  # overall: one component is DOWN
            header = screen_text(app).splitlines()[0]
            assert appliance.url in header and "v0.1.0" in header and "refreshed" in header

            await pilot.resize_terminal(70, 24)  # narrower than 80: figures keep their values
            await until(pilot, lambda: app.screen.has_class("-narrow"), "the narrow layout")
            assert "✖ DOWN" in line_with(app, "Kafka") and "lag" in screen_text(app)
    run(scenario)


def path_at(table: DataTable, row: int) -> str:
    """The path a row of the events table shows (its cells are rich Text)."""
    return str(table.get_row_at(row)[3])


def visible_paths(app: DashboardApp) -> list[str]:
    """The paths of the events table's rows on screen, top to bottom."""
    lines = screen_text(app).splitlines()
    top = next(i for i, line in enumerate(lines) if "Events " in line)
    return [line.split()[4] for line in lines[top + 2:] if line.startswith("│ ")]


class OneTable(App):
    def compose(self):
        table = EventsTable(id="events-table")
        table.add_column("time", key="time")
        table.add_column("path", key="path")
        yield table


def test_a_frame_drawn_before_the_table_measured_new_rows_does_not_stay_on_screen():
    # Seen in a fresh container: every column left at its header's width ("16:2", "/old").
    async def scenario():
        app = OneTable()
        async with app.run_test(size=(40, 6)) as pilot:
            table = app.query_one(EventsTable)
            table.add_row("1", "/a", key="short")
            await pilot.pause(0.1)
            table.add_row("16:23:45", "/older/39", key="wider")
            table.sort("time", reverse=True)
            assert " 16:2  /old " in screen_text(app)  # drawn before the new row was measured
            await until(pilot, lambda: " 16:23:45  /older/39 " in screen_text(app),
                        "the columns widened on screen", timeout=2)
    run(scenario)


def test_the_table_opens_on_the_newest_event_and_new_ones_come_in_above_it(appliance, data_dir):
    insert_events(data_dir, *(http_response(f"/older/{i}", seconds_ago=50 - i) for i in range(40)))

    async def scenario():
        app = dashboard(appliance.url)
        async with app.run_test(size=(80, 24)) as pilot:  # six rows on screen, of 43
            table = events_table(app)
            await until(pilot, lambda: table.row_count == 43, "the 43 seeded events")
            # newest first, like /events: the newest on top, selected, on screen; the oldest below
            assert [path_at(table, i) for i in (0, 1, 42)] == ["/older/39", "/older/38", "/seeded/0"]
            assert (table.cursor_row, table.scroll_y) == (0, 0)
            # the screen follows the rows by a refresh (column widths included): wait for it
            newest = [f"/older/{i}" for i in range(39, 33, -1)]
            await until(pilot, lambda: visible_paths(app) == newest, "the newest six on screen")

            table.move_cursor(row=30)  # the reader goes down to an older event
            await pilot.pause()
            key, scroll, seen = table.coordinate_to_cell_key(table.cursor_coordinate).row_key, \
                table.scroll_y, visible_paths(app)
            assert scroll > 0

            insert_events(data_dir, http_response("/brand-new"))
            await until(pilot, lambda: table.row_count == 44, "the new event")
            assert path_at(table, 0) == "/brand-new"
            # it went in above: the reader's event and the view moved down with it, one row
            assert table.coordinate_to_cell_key(table.cursor_coordinate).row_key == key
            assert table.cursor_row == 31
            await until(pilot, lambda: table.scroll_y == scroll + 1, "the view to keep its rows")
            assert visible_paths(app) == seen

            table.move_cursor(row=0)  # back on the newest row: the table follows again
            await pilot.pause()
            insert_events(data_dir, http_response("/newer-still"))
            await until(pilot, lambda: table.row_count == 45, "the next event")
            assert table.cursor_row == 0 and path_at(table, 0) == "/newer-still"
            await until(pilot, lambda: visible_paths(app)[0] == "/newer-still", "the followed row on screen")
    run(scenario)


def test_past_its_bound_the_table_drops_its_oldest_rows_at_once_and_keeps_the_readers(monkeypatch):
    monkeypatch.setattr(events_widget, "MAX_EVENTS", 50)
    monkeypatch.setattr(events_widget, "TRIM_SLACK", 20)  # trims when past 70 rows, to 50

    class Panel(App[None]):
        def compose(self):
            yield events_widget.EventsPanel(id="events")

    def batch(first: int, count: int) -> list[dict[str, Any]]:
        return [{"event_id": f"e{i}", "event_type": "http_response", "path": f"/{i}",
                 "occurred_at": f"2026-02-03T10:00:{i % 60:02d}.000000Z"}
                for i in range(first, first + count)]

    async def scenario():
        app = Panel()
        async with app.run_test(size=(80, 24)) as pilot:
            panel = app.query_one(events_widget.EventsPanel)
            panel.add_events(batch(0, 60))
            await pilot.pause()
            panel.table.move_cursor(row=10)  # the reader on /49
            await pilot.pause()
            panel.add_events(batch(60, 15))  # 75 rows: past 70
            await pilot.pause()
            table = panel.table
            assert table.row_count == 50
            assert [path_at(table, i) for i in (0, 49)] == ["/74", "/25"]  # the newest 50
            assert table.cursor_row == 25 and path_at(table, 25) == "/49"
    run(scenario)


def test_space_pauses_new_rows_and_resuming_shows_them(appliance, data_dir):
    async def scenario():
        app = dashboard(appliance.url)
        async with app.run_test(size=SIZE) as pilot:
            table = events_table(app)
            await until(pilot, lambda: table.row_count == 3, "the seeded events")
            await pilot.press("space")
            insert_events(data_dir, http_response("/while-paused"))
            await until(pilot, lambda: "PAUSED (1 new)" in screen_text(app), "the paused title")
            assert table.row_count == 3
            await pilot.press("space")
            await until(pilot, lambda: table.row_count == 4, "the held-back row")
            assert "/while-paused" in screen_text(app)
    run(scenario)


def test_filter_narrows_the_table_and_enter_opens_the_full_event(appliance, data_dir):
    insert_events(data_dir, custom_event("deploy.finished", {"version": "9.9.9", "by": "ci"}),
                  http_response("/boom", status=503))

    async def scenario():
        app = dashboard(appliance.url)
        async with app.run_test(size=SIZE) as pilot:
            table = events_table(app)
            await until(pilot, lambda: table.row_count == 5, "the seeded events")
            await pilot.press("f", *"deploy")
            await until(pilot, lambda: table.row_count == 1, "the filter to apply")
            assert "deploy.finished" in screen_text(app) and "/seeded/0" not in screen_text(app)
            await pilot.press("enter", "enter")  # keep the filter, then open the event

            assert isinstance(app.screen, EventDetailScreen)
            detail = screen_text(app)
            assert '"version": "9.9.9"' in detail and '"event_type": "deploy.finished"' in detail
            await pilot.press("escape")
            assert isinstance(app.screen, MainScreen) and table.row_count == 1

            await pilot.press("escape")  # clears the filter
            await until(pilot, lambda: table.row_count == 5, "all rows back")
            # Text no random event or request id can contain (a hex id may well contain "503").
            await pilot.press("slash", *"/boom")
            await until(pilot, lambda: table.row_count == 1, "the text filter")
            assert "/boom" in screen_text(app) and "/seeded/0" not in screen_text(app)
    run(scenario)


def test_stopped_api_shows_the_unreachable_banner_and_a_restart_recovers(appliance, data_dir):
    async def scenario():
        app = dashboard(appliance.url)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "Kafka" in screen_text(app), "the first refresh")
            appliance.stop()
            await until(pilot, lambda: "Appliance unreachable" in screen_text(app), "the banner")
            banner = screen_text(app)
            assert "connection refused" in banner and "retrying in" in banner
            assert "Health ✖ DOWN (stale)" in banner  # the last known state stays, marked stale

            restarted = await asyncio.to_thread(launch_api, data_dir, {"PORT": str(appliance.port)})
            try:
                await until(pilot, lambda: "Appliance unreachable" not in screen_text(app),
                            "the reconnection", timeout=20)
                assert "(stale)" not in screen_text(app)
                assert "✖ DOWN" in line_with(app, "Kafka")
            finally:
                restarted.stop()
    run(scenario)


def test_without_a_read_token_the_dashboard_says_how_to_get_one(data_dir):
    server = launch_api(data_dir, {"API_TOKEN": TOKEN})
    try:
        async def scenario():
            app = dashboard(server.url, token=None)
            async with app.run_test(size=SIZE) as pilot:
                await until(pilot, lambda: "simple-time-service token --scope read" in screen_text(app),
                            "the 401 banner")
                banner = line_with(app, "GET /status")
                assert "GET /status?history=10: 401 /status needs a read token" in banner
                await pilot.press("s")  # the statistics are of events: they need it too
                await until(pilot, lambda: "GET /events/stats: 401" in screen_text(app), "the stats banner")
                assert line_with(app, "/events/stats: 401").strip(" │").startswith(
                    "▲ GET /events/stats: 401 /events/stats needs a read token")
            app = dashboard(server.url, TOKEN)
            async with app.run_test(size=SIZE) as pilot:
                await until(pilot, lambda: events_table(app).row_count == 3, "the events")
                assert "GET /events" not in screen_text(app)
        run(scenario)
    finally:
        server.stop()


def top_rows(app: DashboardApp, title: str) -> list[list[str]]:
    """The rows of a top list on the stats screen as words (name, count, share), bars left out."""
    lines = screen_text(app).splitlines()
    top = next(i for i, line in enumerate(lines) if title in line)
    left = lines[top].rindex("╭", 0, lines[top].index(title))
    right = lines[top].index("╮", left)
    rows = []
    for line in lines[top + 1:]:
        words = [word for word in line[left + 1:right].split() if word.strip(BAR_BLOCKS)]
        if line[left] == "╰" or not words:
            break
        rows.append(words)
    return rows


BAR_BLOCKS = "█▉▊▋▌▍▎▏"


def test_s_shows_the_top_clients_and_routes_of_the_last_hour(appliance, data_dir):
    insert_events(data_dir,  # three from 203.0.113.7 are there already, one each to /seeded/0-2
                  *(http_response("/a", user_ip="198.51.100.1", seconds_ago=100 + i) for i in range(4)),
                  *(http_response("/b", 404, user_ip="198.51.100.2", seconds_ago=200 + i) for i in range(2)),
                  http_response("/old", user_ip="192.0.2.99", seconds_ago=2 * 3600))  # not in the hour
    client = RecordingClient(appliance.url)

    async def scenario():
        app = DashboardApp(client, interval=INTERVAL)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: events_table(app).row_count == 10, "the events")
            assert "/events/stats" not in client.paths  # the main screen's polls never ask it
            await pilot.press("s")
            await until(pilot, lambda: "198.51.100.1" in screen_text(app), "the stats screen")
            assert isinstance(app.screen, StatsScreen)
            assert top_rows(app, "Top clients") == [["198.51.100.1", "4", "44.4%"],
                                                    ["203.0.113.7", "3", "33.3%"],
                                                    ["198.51.100.2", "2", "22.2%"]]
            assert top_rows(app, "Top routes") == [["/a", "4", "44.4%"], ["/b", "2", "22.2%"],
                                                   ["/seeded/0", "1", "11.1%"], ["/seeded/1", "1", "11.1%"],
                                                   ["/seeded/2", "1", "11.1%"]]
            assert "9 events: http_response 9" in screen_text(app)
            assert "answers 2xx 7 · 4xx 2" in screen_text(app)
            assert "duration p50 0.5ms · p95 0.5ms · p99 0.5ms" in screen_text(app)
            assert "none: no request of the last hour came through a trusted proxy" in screen_text(app)

            polls = len(client.asked)
            await until(pilot, lambda: len(client.asked) >= polls + 4, "four more main polls")
            assert client.paths.count("/events/stats") == 1  # asked on opening, next in 15 s

            appliance.stop()
            await pilot.press("r")
            await until(pilot, lambda: "Appliance unreachable" in screen_text(app), "the banner")
            assert "connection refused — retrying in 15 s (r: now)" in flat_text(app)  # wrapped
            assert "Top clients (stale)" in screen_text(app)  # the last numbers stay, marked
            assert top_rows(app, "Top clients")[0] == ["198.51.100.1", "4", "44.4%"]
            await pilot.press("escape")
            assert isinstance(app.screen, MainScreen)
    run(scenario)


# --- an appliance that misbehaves: a stub server saying exactly what a test wants -----------


class Stub(http.server.ThreadingHTTPServer):
    answers: dict[str, tuple[int, bytes]]


class StubHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, body = self.server.answers.get(self.path.split("?")[0], (404, b'{"error": "not found"}'))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[Stub]:
    server = Stub(("127.0.0.1", 0), StubHandler)
    server.answers = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def stub_status(with_history: bool = True) -> bytes:
    body: dict[str, Any] = {
        "version": "0.1.0", "hostname": "stub", "api_uptime_s": 5.0, "overall": "UP", "stale": False,
        "agent": {"state": "UP", "detail": "reported 1 s ago"},
        "components": {"kafka": {"state": "UP", "detail": "lag 7", "since": now_iso(30),
                                 "checked_at": now_iso(1), "data": {"lag_total": 7}}}}
    if with_history:
        body["history"] = {"kafka": [[now_iso(20), "UP", {"lag_total": 3}],
                                     [now_iso(10), "UP", {"lag_total": 5}]],
                           "database": [[now_iso(20), "UP", {"rows": {"a": 100}}],
                                        [now_iso(10), "UP", {"rows": {"a": 150}}]]}
    return json.dumps(body).encode()


def test_server_errors_and_malformed_answers_become_banners_never_crashes(stub):
    url = f"http://127.0.0.1:{stub.server_address[1]}"
    stub.answers = {"/status": (500, b'{"error": "internal server error", "status": 500}')}

    async def scenario():
        app = dashboard(url)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "500 internal server error" in line_with(app, "No status from"),
                        "the 5xx banner")
            stub.answers = {"/status": (200, b"<html>not json</html>")}
            await pilot.press("r")  # retry now rather than after the back-off
            await until(pilot, lambda: "malformed JSON" in screen_text(app), "the malformed banner")
            stub.answers = {"/status": (200, stub_status()), "/events": (200, b"[1, 2]")}
            await pilot.press("r")
            await until(pilot, lambda: "expected a JSON object" in screen_text(app), "the events banner")
            assert "✔ UP" in line_with(app, "Kafka")
            stub.answers["/events"] = (200, b'{"events": [], "count": 0}')
            await until(pilot, lambda: "expected a JSON object" not in screen_text(app), "all clear")
    run(scenario)


def test_stats_screen_says_why_it_has_no_numbers_and_survives_any_answer(stub):
    url = f"http://127.0.0.1:{stub.server_address[1]}"
    stub.answers = {"/status": (200, stub_status()), "/events": (200, b'{"events": []}'),
                    "/events/stats": (503, b'{"error": "events database not readable: disk I/O error", '
                                           b'"status": 503}')}

    async def scenario():
        app = dashboard(url)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "Kafka" in screen_text(app), "the main screen")
            await pilot.press("s")
            await until(pilot, lambda: "503" in screen_text(app), "the 503 banner")
            assert "▲ GET /events/stats: 503 events database not readable: disk I/O error — retrying in" \
                in screen_text(app)
            assert "no answer yet" in screen_text(app)
            stub.answers["/events/stats"] = (404, b'{"error": "not found", "status": 404}')
            await pilot.press("r")
            await until(pilot, lambda: "this appliance's version has no /events/stats" in screen_text(app),
                        "the 404 banner")
            stub.answers["/events/stats"] = (200, json.dumps({
                "total": "many", "by_type": [1], "by_status_class": {"2xx": -1, "5xx": 2},
                "top_clients": [{"user_ip": "198.51.100.9", "count": 2}, "junk", {"count": None}],
                "top_routes": None, "duration_ms": {"p50": "fast"}}).encode())
            await pilot.press("r")
            await until(pilot, lambda: "198.51.100.9" in screen_text(app), "what could be read")
            assert "0 events" in screen_text(app) and "answers 5xx 2" in screen_text(app)
            assert "duration p50 – · p95 – · p99 –" in screen_text(app)
            assert "no answers in the last hour" in line_with(app, "198.51.100.9")  # no routes
            assert "503" not in screen_text(app)
    run(scenario)


def test_without_metrics_the_request_figures_are_na_and_status_history_fills_in(stub):
    url = f"http://127.0.0.1:{stub.server_address[1]}"
    stub.answers = {"/status": (200, stub_status()), "/events": (200, b'{"events": []}')}

    async def scenario():
        app = dashboard(url)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "no /metrics: from /status" in screen_text(app), "the fallback")
            for figure in ("req/s", "5xx", "p95"):
                assert "n/a" in line_with(app, figure)
            assert "5.0/s" in line_with(app, "persisted")  # 50 rows in 10 s of agent history
            assert " 7 " in line_with(app, "lag")
    run(scenario)


# --- the parts without a screen ---------------------------------------------------------------


HISTOGRAM = """# TYPE http_requests_total counter
http_requests_total{{method="GET",route="/",status="200"}} {ok}
http_requests_total{{method="GET",route="/",status="500"}} {bad}
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{{le="0.01",method="GET",route="/"}} {fast}
http_request_duration_seconds_bucket{{le="0.1",method="GET",route="/"}} {total}
http_request_duration_seconds_bucket{{le="+Inf",method="GET",route="/"}} {total}
http_request_duration_seconds_count{{method="GET",route="/"}} {total}
http_request_duration_seconds_sum{{method="GET",route="/"}} 1.0
"""


def scrape(at: float, ok: int, bad: int, fast: int) -> Scrape:
    return parse_scrape(HISTOGRAM.format(ok=ok, bad=bad, fast=fast, total=ok + bad), at)


def test_rates_between_two_scrapes_leave_out_the_dashboards_own_requests():
    before, after = scrape(100.0, 1000, 0, 1000), scrape(110.0, 1096, 4, 1010)
    figures = rates(before, after, own_requests=0)
    assert figures["requests"] == pytest.approx(10.0)
    assert figures["errors"] == pytest.approx(4.0)
    # 100 new requests, 10 under 10 ms: rank 95 falls in (0.01, 0.1]
    assert figures["p95"] == pytest.approx((0.01 + 0.09 * 85 / 90) * 1000)
    assert rates(before, after, own_requests=20)["requests"] == pytest.approx(8.0)


def test_a_restarted_appliance_resets_its_counters_without_negative_rates():
    figures = rates(scrape(100.0, 5000, 0, 5000), scrape(110.0, 30, 0, 30))
    assert figures["requests"] == pytest.approx(3.0)


def test_quantile_interpolates_like_prometheus():
    assert quantile(0.5, [(1.0, 50.0), (2.0, 100.0), (float("inf"), 100.0)]) == pytest.approx(1.0)
    assert quantile(0.95, [(1.0, 0.0), (float("inf"), 10.0)]) == pytest.approx(1.0)
    assert quantile(0.95, [(1.0, 0.0), (float("inf"), 0.0)]) is None


def test_malformed_metrics_text_is_a_problem_not_a_crash():
    state = DashboardState("http://x", 2.0, 10)
    state.apply(Reading(at=1.0, status={"components": {}}, metrics="http_requests_total{ 1\n"))
    assert state.metrics_state == "failing" and "not Prometheus text" in state.problems["metrics"]


def test_unreachable_client_names_the_reason():
    client = ApplianceClient("http://127.0.0.1:9", timeout=0.5)  # port 9 (discard): nothing listens
    with pytest.raises(ApplianceError) as caught:
        client.status()
    assert caught.value.kind == ApplianceError.UNREACHABLE
    assert caught.value.reason == "connection refused"


def test_retry_waits_double_after_each_failure_up_to_a_bound():
    state = DashboardState("http://x", 2.0, 10)
    refused = ApplianceError(ApplianceError.UNREACHABLE, "connection refused")
    delays = []
    for _ in range(6):
        state.apply(Reading(at=0.0, problems={"status": refused}))
        delays.append(state.retry_delay())
    assert delays == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_cli_has_a_dashboard_subcommand_with_its_options():
    args = cli.parser().parse_args(["dashboard", "--url", "http://10.0.0.5:8080", "--interval", "5"])
    assert (args.command, args.url, args.token, args.interval) == (
        "dashboard", "http://10.0.0.5:8080", None, 5.0)
    result = run_cli("dashboard", "--help")
    assert result.returncode == 0
    assert all(option in result.stdout for option in ("--url", "--token", "--interval"))
    assert run_cli("dashboard", "--interval", "0").returncode == 2


# --- the figures agree with themselves ---------------------------------------------------------


def healthz_only(polls: int, start: float) -> DashboardState:
    """The state after ``polls`` polls 1 s apart of an appliance whose only traffic is the status
    agent's /healthz every 5 s (on the real API the dashboard's own requests cancel out exactly,
    so the points alternate 0.0 and ~1.0 req/s: one probe in one second)."""
    state = DashboardState("http://x", 1.0, 10)
    probes = 0
    for i in range(polls + 1):
        probes += i % 5 == 2  # a probe lands just before this poll
        text = f'# TYPE http_requests_total counter\nhttp_requests_total{{status="200"}} {probes}\n'
        state.apply(Reading(at=start + i, status={"components": {}}, metrics=text))
    return state


def test_an_idle_appliance_reads_its_probe_rate_beside_a_low_flat_req_s_sparkline():
    clock = FixedClock(NOW)
    state = healthz_only(600, clock.now - 600)  # ten minutes: the whole sparkline

    async def scenario():
        app = DashboardApp(FakeClient({}), interval=3600, clock=clock)
        async with app.run_test(size=(80, 24)) as pilot:
            await app.workers.wait_for_complete()
            app.screen.state = state
            app.screen.redraw()
            await pilot.pause()
            # 0.2 req/s: the value and every column of the line say the same; the line stays low
            # (its scale reaches at least 1/s), not at full height for a probe every 5 s
            assert line_with(app, "req/s").split("│")[-2].strip() == "req/s        0.2/s ▂▂▂▂▂▂▂▂▂▂▂"
    run(scenario)


# --- the status history: asked once, then only what is new ---------------------------------


def record_round(data_dir: Path, at: datetime, lag: int) -> str:
    """One round of the agent at ``at``, as status_writer writes it; returns its stored time."""
    db = status_db.connect(data_dir / "status.db")
    try:
        status_writer.record({"kafka": ("UP", f"lag {lag}", {"lag_total": lag}),
                              "api": ("UP", "answers /healthz", {})}, at, 60.0, "0.1.0")
    finally:
        db.close()
    return iso(at)


def test_status_history_is_asked_for_once_then_only_the_rounds_after_the_newest_it_has(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    now = datetime.now(timezone.utc)
    record_round(data_dir, now - timedelta(minutes=11), 1)  # older than the 10 min window
    record_round(data_dir, now - timedelta(seconds=20), 3)
    second = record_round(data_dir, now - timedelta(seconds=10), 5)
    server = launch_api(data_dir)
    try:
        client = RecordingClient(server.url)

        async def scenario():
            app = DashboardApp(client, interval=INTERVAL)
            async with app.run_test(size=SIZE) as pilot:
                await until(pilot, lambda: len(client.asked) >= 3, "three polls")
                third = record_round(data_dir, datetime.now(timezone.utc), 7)
                await until(pilot, lambda: f"since={quote(third)}" in client.asked[-1][0], "the new round")
                asked = list(dict.fromkeys(client.asked))  # in order, each distinct answer once
                # the window once (two rounds: the one of 11 min ago is outside), then each poll
                # only what came after the newest round it had: nothing, then the new one
                assert asked == [("/status?history=10", 2),
                                 (f"/status?history=10&since={quote(second)}", 0),
                                 (f"/status?history=10&since={quote(second)}", 1),
                                 (f"/status?history=10&since={quote(third)}", 0)]
                lag = app.screen.state.status_series["lag"]
                assert [value for _, value in lag.points] == [3.0, 5.0, 7.0]
        run(scenario)
    finally:
        server.stop()


def test_the_history_kept_is_the_window_however_long_the_dashboard_runs():
    state = DashboardState("http://x", 1.0, 10)
    start = datetime(2026, 2, 3, 10, 0, tzinfo=timezone.utc)
    for minute in range(30):  # half an hour of answers to ?since=, a round every 10 s in each
        rounds = [[iso(start + timedelta(minutes=minute, seconds=s)), "UP", {"lag_total": minute}]
                  for s in range(0, 60, 10)]
        state.apply(Reading(at=0.0, status={"components": {}, "history": {"kafka": rounds}}))
    points = state.status_series["lag"].points
    assert state.history_since == "2026-02-03T10:29:50.000000Z"
    assert (points[0][0], points[-1][0]) == ((start + timedelta(minutes=19, seconds=50)).timestamp(),
                                             (start + timedelta(minutes=29, seconds=50)).timestamp())
    assert len(points) == 61  # ten minutes of rounds 10 s apart, both ends included

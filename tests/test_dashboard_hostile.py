"""Hostile data from the appliance is drawn as text, everywhere, and never ends the dashboard.

Anonymous clients choose what the appliance records: a path, a query, a User-Agent, a proxy
chain, a custom event's payload. Here a fake client answers with every shape of such a value in
every field the dashboard draws (events, component details, hostname, version, errors, top
lists, stats), and the screens must show each one verbatim, markup as the characters it is made
of and control characters as visible escapes, with no control character reaching the screen.

Then the same through the real pipeline: GET requests to the real API (with the test broker
and the real consumer) whose paths and User-Agent hold those shapes become rows, and the
dashboard shows them as text in Pilot and in a real terminal (tmux), whose title and paste
buffers (an OSC 52 would fill one) stay as they were.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import pytest
from procs import IN_CI, TEST_TOKEN, VENV_BIN, Appliance, Broker, free_port
from test_dashboard import screen_text, until
from test_dashboard_snapshots import FakeClient, FixedClock, stamp
from textual.widgets import DataTable, Input

from dashboard.app import DashboardApp
from dashboard.client import ApplianceClient, ApplianceError
from dashboard.screens.detail import EventDetailScreen
from dashboard.screens.main import MainScreen
from dashboard.screens.stats import StatsScreen
from dashboard.widgets.events import PATH_WIDTH

# (what a client sent, what the screen shows, what the event's JSON view shows: JSON's escapes)
SHAPES = (
    ("[/]", "[/]", "[/]"),
    ("[@click=app.quit]", "[@click=app.quit]", "[@click=app.quit]"),
    ("[link=https://example.invalid]x[/link]", "[link=https://example.invalid]x[/link]",
     "[link=https://example.invalid]x[/link]"),
    ("[bold red]", "[bold red]", "[bold red]"),
    ("\x1b]0;PWNED\x07\x1b[2J", r"\x1b]0;PWNED\x07\x1b[2J", r"\u001b]0;PWNED\u0007\u001b[2J"),
    ("\x1b]52;c;SGVsbG8=\x07", r"\x1b]52;c;SGVsbG8=\x07", r"\u001b]52;c;SGVsbG8=\u0007"),
    ("\x1b]8;;http://x\x07link\x1b]8;;\x07", r"\x1b]8;;http://x\x07link\x1b]8;;\x07",
     r"\u001b]8;;http://x\u0007link\u001b]8;;\u0007"),
    ("\x9b31m", r"\x9b31m", r"\u009b31m"),
    ("[", "[", "["),
    ("/admin\u202egnp.exe", r"/admin\u202egnp.exe", r"/admin\u202egnp.exe"),
    ("line\nbreak\tand\rreturn", r"line\nbreak\tand\rreturn", r"line\nbreak\tand\rreturn"),
    ("lone \udc80 surrogate", r"lone \udc80 surrogate", r"lone \udc80 surrogate"),
)
SENT = [sent for sent, _, _ in SHAPES]
SHOWN = [shown for _, shown, _ in SHAPES]
IN_JSON = [in_json for _, _, in_json in SHAPES]
CONTROLS = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))] + ["\u202e", "\udc80"]
SIZE = (220, 60)


def shape(index: int) -> str:
    return SENT[index % len(SENT)]


def http_event(index: int, value: str) -> dict[str, Any]:
    return {"event_type": "http_response", "event_id": f"00000000-0000-4000-8000-{index:012d}",
            "request_id": value, "occurred_at": stamp(60 - index), "persisted_at": stamp(59 - index),
            "hostname": value, "method": value, "route": value, "path": value, "query": value,
            "status": 200, "duration_ms": 1.0, "user_ip": value, "proxy_chain": value,
            "user_agent": value, "bytes": 10}


def custom_event() -> dict[str, Any]:
    return {"event_type": "deploy.finished", "event_id": "00000000-0000-4000-8000-999999999999",
            "request_id": "req-custom", "occurred_at": stamp(1), "persisted_at": stamp(1),
            "hostname": "web-1", "payload": {sent: sent for sent in SENT}}


def status() -> dict[str, Any]:
    components = {f"x{index}": {"state": sent, "detail": sent, "since": stamp(30),
                                "checked_at": stamp(1), "data": {}} for index, sent in enumerate(SENT)}
    return {"version": shape(4), "hostname": shape(0), "api_uptime_s": 5.0, "overall": shape(1),
            "stale": True, "agent": {"state": shape(3), "detail": shape(6)}, "components": components,
            "history": {"kafka": [[shape(0), shape(1), {"lag_total": shape(2)}], shape(3)]}}


def stats() -> dict[str, Any]:
    return {"since": shape(0), "until": shape(4), "total": 12,
            "by_type": {sent: 1 for sent in SENT}, "by_status_class": {shape(5): 3, "2xx": 9},
            "top_clients": [{"user_ip": sent, "count": 10 - i} for i, sent in enumerate(SENT[:9])],
            "top_routes": [{"route": sent, "count": 10 - i} for i, sent in enumerate(SENT[:9])],
            "top_proxy_chains": [{"proxy_chain": sent, "count": 1} for sent in SENT],
            "duration_ms": {"p50": shape(1), "p95": 1.0, "p99": None}}


def hostile_answers() -> dict[str, Any]:
    return {"/status": status(), "/version": {"version": shape(2)},
            "/events": {"events": [custom_event(), *(http_event(i, sent) for i, sent in enumerate(SENT))]},
            "/events/stats": stats(),
            "/metrics": ApplianceError(ApplianceError.SERVER, f"GET /metrics: 500 {shape(5)}", 500)}


def assert_safe(app: DashboardApp, where: str) -> str:
    """The app runs, and no control character is on its screen; returns the screen's text."""
    assert app.is_running and app.return_code is None, f"the dashboard ended on {where}"
    text = screen_text(app)
    raw = sorted({repr(char) for char in CONTROLS if char in text.replace("\n", "")})
    assert not raw, f"raw control characters on the {where}: {raw}\n{text}"
    return text


def assert_shown(text: str, expected: list[str], where: str) -> None:
    missing = [shown for shown in expected if shown not in text]
    assert not missing, f"not shown verbatim on the {where}: {missing}\n{text}"


def shortened(shown: str, width: int) -> str:
    return shown if len(shown) <= width else shown[:width - 1] + "…"


async def open_dashboard(app: DashboardApp, scenario) -> None:
    async with app.run_test(size=SIZE, notifications=True) as pilot:  # toasts shown, as in a terminal
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        await scenario(pilot)


def run(scenario, answers: dict[str, Any] | None = None) -> None:
    """``scenario(pilot)`` on the dashboard of a fake appliance (no poll of its own: one an hour)."""
    app = DashboardApp(FakeClient(answers or hostile_answers()), interval=3600, clock=FixedClock())
    asyncio.run(asyncio.wait_for(open_dashboard(app, scenario), 60))


def test_the_main_screen_shows_hostile_fields_as_text():
    async def scenario(pilot):
        text = assert_safe(pilot.app, "main screen")
        assert isinstance(pilot.app.screen, MainScreen)
        assert_shown(text, [shortened(shown, PATH_WIDTH) for shown in SHOWN], "events table")
        assert_shown(text, SHOWN, "health panel")
        header = text.splitlines()[0]
        assert_shown(header, [SHOWN[0], SHOWN[2], SHOWN[1]], "header (hostname, version, overall)")
        assert_shown(text, [f"GET /metrics: 500 {SHOWN[5]}", SHOWN[6]], "banner (a problem, the agent)")
        assert pilot.app.screen.query_one(DataTable).row_count == len(SHAPES) + 1
    run(scenario)


def test_the_event_view_shows_a_hostile_event_as_json_with_json_escapes():
    async def scenario(pilot):
        await pilot.press("enter")  # the newest row: the custom event with every shape
        assert isinstance(pilot.app.screen, EventDetailScreen)
        text = assert_safe(pilot.app, "event view")
        assert_shown(text, [f'"{shown}": "{shown}"' for shown in IN_JSON], "event view (its payload)")
        await pilot.press("escape", "down", "enter")  # the next: an HTTP event, hostile everywhere
        assert isinstance(pilot.app.screen, EventDetailScreen)
        assert_safe(pilot.app, "event view of an HTTP event")
        await pilot.press("escape")
        assert isinstance(pilot.app.screen, MainScreen)
    run(scenario)


def test_the_stats_screen_shows_hostile_names_as_text():
    async def scenario(pilot):
        await pilot.press("s")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(pilot.app.screen, StatsScreen)
        text = assert_safe(pilot.app, "stats screen")
        assert_shown(text, SHOWN[:9], "top lists")
        assert_shown(text, [SHOWN[4]], "window in the title")
        await pilot.press("escape")
        assert isinstance(pilot.app.screen, MainScreen)
    run(scenario)


def test_a_hostile_failure_reason_is_text_in_the_banner_and_the_notification():
    answers = hostile_answers()
    answers["/status"] = [status(), ApplianceError(ApplianceError.UNREACHABLE, f"{shape(1)} {shape(7)}")]

    async def scenario(pilot):
        pilot.app.screen.poll()  # the second poll: the appliance is gone, for a hostile reason
        await pilot.app.workers.wait_for_complete()
        await until(pilot, lambda: "Lost the appliance" in screen_text(pilot.app), "the notification")
        text = assert_safe(pilot.app, "lost connection")
        assert_shown(text, [f"Lost the appliance: {SHOWN[1]} {SHOWN[7]}",
                           f"Appliance unreachable at http://10.0.0.5:8080: {SHOWN[1]} {SHOWN[7]}"],
                     "notification and banner")
    run(scenario, answers)


def test_a_filter_typed_with_markup_is_text_in_the_table_title():
    async def scenario(pilot):
        await pilot.press("f", *"[/]")
        assert pilot.app.screen.query_one("#filter", Input).value == "[/]"
        await pilot.pause()
        text = assert_safe(pilot.app, "filtered table")
        assert "filter “[/]”" in text
    run(scenario)


# --- against the real appliance: hostile requests recorded by the real pipeline -----------------

# The appliance records a non-ASCII path mangled ("/admin\u202e..." is stored as "/admin?..."),
# so the shapes outside ASCII travel in the User-Agent, which it records as sent (UTF-8).
PATH_SHAPES = [(sent, shown) for sent, shown, _ in SHAPES if sent.isascii()]
AGENT = "[/] \x9b31m /admin\u202egnp.exe [@click=app.quit]"
AGENT_IN_JSON = r'"user_agent": "[/] \u009b31m /admin\u202egnp.exe [@click=app.quit]"'
REQUESTS = len(PATH_SHAPES) + 1  # the last one, to /agent, is the newest event: its User-Agent


@pytest.fixture(scope="module")
def hostile_appliance(tmp_path_factory) -> Iterator[Appliance]:
    """The real API and consumer over the test broker, with the hostile requests as its rows."""
    directory = tmp_path_factory.mktemp("hostile")
    broker = Broker(free_port(), directory / "broker.log").start()
    appliance = Appliance(directory, broker.bootstrap)
    try:
        appliance.start()
        for index, (sent, _) in enumerate(PATH_SHAPES):  # percent-encoded, as a client sends them
            reply = appliance.http.get("/" + quote(sent, safe=""),
                                       headers={"X-Request-ID": f"hostile-{index}"})
            assert reply.status == 404, (sent, reply.status, reply.body)  # answered, so recorded
        # http.client sends a header's str as latin-1: these are the UTF-8 bytes of AGENT
        reply = appliance.http.get("/agent", headers={"User-Agent": AGENT.encode().decode("latin-1"),
                                                      "X-Request-ID": "hostile-agent"})
        assert reply.status == 404, reply.body
        appliance.wait_rows("http_responses", REQUESTS)
        yield appliance
    finally:
        appliance.stop()
        broker.stop()


def expected_paths() -> list[str]:
    return [shortened("/" + shown, PATH_WIDTH) for _, shown in PATH_SHAPES]


@pytest.mark.broker
@pytest.mark.e2e
def test_hostile_requests_to_the_real_appliance_are_text_in_the_dashboard(hostile_appliance):
    async def scenario():
        app = DashboardApp(ApplianceClient(hostile_appliance.http.url, TEST_TOKEN), interval=0.25)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: all(path in screen_text(app) for path in expected_paths()),
                        "the hostile requests' paths on screen", timeout=30)
            assert_shown(assert_safe(app, "main screen"), expected_paths(), "events table")
            await pilot.press("enter")  # the newest event: the request with the hostile User-Agent
            assert isinstance(app.screen, EventDetailScreen)
            assert_shown(assert_safe(app, "event view"), [AGENT_IN_JSON], "event view")
            await pilot.press("escape")
            assert isinstance(app.screen, MainScreen)
    asyncio.run(asyncio.wait_for(scenario(), 60))


class Tmux:
    """A tmux server of the test's own (its own socket and config): a real terminal whose
    title, paste buffers (set-clipboard on: an OSC 52 would make one) and screen can be read."""

    def __init__(self, directory: Path) -> None:
        if shutil.which("tmux") is None:
            if IN_CI:
                pytest.fail("tmux is required in CI (Debian package tmux)")
            pytest.skip("tmux not installed")
        self.socket, self.config = directory / "tmux.sock", directory / "tmux.conf"
        self.config.write_text("set -g set-clipboard on\nset -g remain-on-exit on\n")

    def __call__(self, *args: str) -> str:
        # The environment given explicitly, without COLUMNS and LINES: readline (which pytest
        # imports) exports COLUMNS=80 LINES=24 to child processes behind os.environ's back, and
        # the dashboard would take the 140x45 pane for 80x24.
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        return subprocess.run(["tmux", "-u", "-S", str(self.socket), "-f", str(self.config), *args],
                              check=True, capture_output=True, text=True, timeout=10, env=env).stdout

    def start(self, name: str, command: str) -> None:
        self("new-session", "-d", "-x", "140", "-y", "45", "-s", name, command)

    def show(self, name: str, format: str) -> str:
        return self("display-message", "-p", "-t", name, format).strip()

    def screen(self, name: str) -> str:
        return self("capture-pane", "-p", "-t", name)

    def wait_for(self, name: str, texts: list[str], what: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen(name)
            if all(text in screen for text in texts) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        missing = [text for text in texts if text not in screen]
        size = self.show(name, "#{window_width}x#{window_height}")
        assert not missing, f"tmux ({size}) shows no {what} after {timeout} s: {missing}\n{screen}"
        return screen

    def stop(self) -> None:
        if self.socket.exists():
            subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], capture_output=True, timeout=10)


@pytest.mark.broker
@pytest.mark.e2e
def test_in_a_real_terminal_hostile_events_change_no_title_clipboard_nor_screen(hostile_appliance, tmp_path):
    tmux = Tmux(tmp_path)
    try:
        tmux.start("probe", "sleep 120")  # a pane's title before anything wrote one
        title = tmux.show("probe", "#{pane_title}")
        tmux.start("dashboard", f"{VENV_BIN / 'simple-time-service'} dashboard "
                                f"--url {hostile_appliance.http.url} --token {TEST_TOKEN} "
                                f"--interval 0.5")
        screen = tmux.wait_for("dashboard", expected_paths(), "hostile paths as text")
        assert "Events " in screen and hostile_appliance.http.url in screen.splitlines()[0]
        tmux("send-keys", "-t", "dashboard", "Enter")  # the newest event's JSON
        tmux.wait_for("dashboard", [AGENT_IN_JSON], "hostile User-Agent as JSON text")
        tmux("send-keys", "-t", "dashboard", "Escape")
        tmux.wait_for("dashboard", expected_paths(), "events table again")
        assert tmux.show("dashboard", "#{pane_title}") == title, "the dashboard's pane title changed"
        assert tmux("list-buffers") == "", "a paste buffer appeared: an OSC 52 reached the terminal"
        assert tmux.show("dashboard", "#{pane_dead}") == "0", tmux.screen("dashboard")
    finally:
        tmux.stop()


def test_snapshot_of_hostile_fields_with_their_escapes_in_reverse_video(snap_compare):
    async def run_before(pilot) -> None:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
    app = DashboardApp(FakeClient(hostile_answers()), interval=3600, clock=FixedClock())
    assert snap_compare(app, run_before=run_before, terminal_size=(120, 40))


def dead_letters() -> dict[str, Any]:
    return {"dead_letters": [{"id": i + 1, "received_at": stamp(10 + i), "reason": sent,
                              "replay_outcome": None} for i, sent in enumerate(SENT[:9])],
            "by_reason": [{"reason": sent, "count": 9 - i} for i, sent in enumerate(SENT[:9])],
            "count": 9, "limit": 50, "next": None}


def test_the_dead_letters_screen_lists_hostile_reasons_as_text():
    from dashboard.screens.dead_letters import DeadLettersScreen
    answers = hostile_answers()
    answers["/events/dead-letters"] = dead_letters()

    async def scenario(pilot):
        await pilot.press("d")
        await pilot.app.workers.wait_for_complete()
        await until(pilot, lambda: "replay once the cause is fixed" in screen_text(pilot.app),
                    "the dead letters screen")
        await pilot.pause()
        assert isinstance(pilot.app.screen, DeadLettersScreen)
        text = assert_safe(pilot.app, "dead letters screen")
        assert_shown(text, SHOWN[:4], "reasons")
        await pilot.press("escape")
        assert isinstance(pilot.app.screen, MainScreen)
    run(scenario, answers)


def test_a_fault_and_a_drain_are_said_in_the_banner_as_text():
    answers = hostile_answers()
    answers["/status"] = {**status(), "switches": {"draining": True, "active": {
        "source": shape(1), "error_rate": 0.5, "delay_ms": 0, "routes": [shape(0), shape(4)],
        "until": shape(3)}}}

    async def scenario(pilot):
        text = assert_safe(pilot.app, "main screen with a fault")
        assert_shown(text, [f"Fault injected ({SHOWN[1]})", "Drained: /readyz answers 503"], "banner")
    run(scenario, answers)

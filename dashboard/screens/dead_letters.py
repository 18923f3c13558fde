"""Dead letters by reason, and the newest of them; esc (or d) goes back, r asks again.

Asked for when the screen opens and every LETTERS_INTERVAL seconds while it is shown. To send
them again once the cause is fixed: `simple-time-service dead-letters replay --reason R`.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from ..client import ApplianceClient, ApplianceError
from ..letters import Letters, fetch_letters
from ..safetext import plain
from ..state import DashboardState
from ..widgets.banner import Banner, stats_banner_lines
from ..widgets.header import ApplianceHeader

LETTERS_INTERVAL = 10.0  # seconds between two /events/dead-letters while the screen is shown
REPLAY_HINT = "replay once the cause is fixed: simple-time-service dead-letters replay --reason TEXT"


class DeadLettersScreen(Screen):
    BINDINGS = [
        Binding("escape,d", "app.pop_screen", "Back"),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self, client: ApplianceClient, state: DashboardState) -> None:
        super().__init__()
        self.client, self.state = client, state

    def compose(self) -> ComposeResult:
        yield ApplianceHeader(id="header")
        yield Banner(id="banner")
        yield Static(plain(REPLAY_HINT), id="letters-hint")
        yield DataTable(id="letters-reasons", cursor_type="row")
        yield DataTable(id="letters-newest", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#letters-reasons", DataTable).add_columns("count", "reason")
        self.query_one("#letters-newest", DataTable).add_columns("id", "received", "replayed", "reason")
        self.query_one(ApplianceHeader).show(self.state)
        self.fetch()
        self.set_interval(LETTERS_INTERVAL, self.fetch)

    def action_refresh(self) -> None:
        self.fetch()

    @work(thread=True, exclusive=True, group="letters", exit_on_error=False)
    def fetch(self) -> None:
        letters, problem = fetch_letters(self.client)
        self.app.call_from_thread(self.show, letters, problem)

    def show(self, letters: Letters | None, problem: ApplianceError | None) -> None:
        if not self.is_attached:
            return
        self.query_one(Banner).show(stats_banner_lines(self.client.base_url, problem, None))
        if letters is None:
            return
        reasons = self.query_one("#letters-reasons", DataTable)
        reasons.clear()
        for reason, count in letters.by_reason or (("no dead letters", 0),):
            reasons.add_row(str(count), plain(reason))
        newest = self.query_one("#letters-newest", DataTable)
        newest.clear()
        for letter in letters.newest:
            newest.add_row(str(letter.id), plain(letter.received_at), plain(letter.replayed or "-"),
                           plain(letter.reason))

"""The last hour in numbers, from /events/stats: totals, answers by class, latency percentiles,
and the top clients, routes and proxy chains; esc (or s) goes back.

/events/stats is asked for when the screen opens, then every STATS_INTERVAL seconds while it is
shown (one worker at a time, like the main screen's polls); ``r`` asks at once. A failure keeps
the last numbers on screen, marked stale, under a banner saying why.
"""

from __future__ import annotations

from typing import Callable

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Static
from textual.worker import get_current_worker

from ..client import ApplianceClient, ApplianceError
from ..format import clock_time
from ..safetext import plain
from ..state import DashboardState
from ..stats import STATS_INTERVAL, Stats, StatsState, fetch_stats
from ..widgets.banner import Banner, stats_banner_lines
from ..widgets.header import ApplianceHeader
from ..widgets.top import TopPanel, summary, window


class StatsScreen(Screen):
    BINDINGS = [
        Binding("escape,s", "app.pop_screen", "Back"),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self, client: ApplianceClient, state: DashboardState, stats: StatsState, *,
                 clock: Callable[[], float], interval: float = STATS_INTERVAL) -> None:
        super().__init__()
        self.client, self.state, self.stats = client, state, stats
        self.clock, self.interval = clock, interval
        self.next_at: float | None = None
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield ApplianceHeader(id="header")
        yield Banner(id="banner")
        with Vertical(id="stats-summary"):
            yield Static(id="stats-summary-text")
        with Horizontal(id="stats-tops"):
            yield TopPanel("Top clients", "no answers in the last hour", id="stats-clients")
            yield TopPanel("Top routes", "no answers in the last hour", id="stats-routes")
        yield TopPanel("Top proxy chains", "none: no request of the last hour came through a "
                                           "trusted proxy", id="stats-proxies")
        yield Footer()

    def on_mount(self) -> None:
        self.redraw()
        self.set_interval(1.0, self.redraw)  # the header and the retry countdown move on
        self.ask()

    # --- asking ----------------------------------------------------------------------------

    def ask(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer, self.next_at = None, None
        self.fetch()

    @work(thread=True, exclusive=True, group="stats", exit_on_error=False)
    def fetch(self) -> None:
        worker = get_current_worker()
        stats, problem = fetch_stats(self.client)
        if not worker.is_cancelled:  # a newer ask (r) was made: its answer wins
            self.app.call_from_thread(self.apply_answer, stats, problem)

    def apply_answer(self, stats: Stats | None, problem: ApplianceError | None) -> None:
        self.stats.apply(self.clock(), stats, problem)
        if not self.is_attached:  # closed just after the answer came: kept for the next opening
            return
        self.next_at = self.clock() + self.interval
        self._timer = self.set_timer(self.interval, self.ask)
        self.redraw()

    def action_refresh(self) -> None:
        self.ask()

    # --- drawing ---------------------------------------------------------------------------

    def redraw(self) -> None:
        now, known = self.clock(), self.stats
        retry_in = None if self.next_at is None or known.problem is None else self.next_at - now
        self.query_one(ApplianceHeader).show(self.state)
        self.query_one(Banner).show(stats_banner_lines(self.client.base_url, known.problem, retry_in))
        stats, stale = known.stats, known.stale
        box = self.query_one("#stats-summary", Vertical)
        box.set_class(stale, "-stale")
        text = self.query_one("#stats-summary-text", Static)
        if stats is None:
            box.border_title, box.border_subtitle = "Last hour", ""
            text.update("asking /events/stats…" if known.problem is None else "no answer yet")
            for panel in self.query(TopPanel):
                panel.show(None, 0, False)
            return
        box.border_title = plain(f"Last hour · {window(stats)}")
        box.border_subtitle = (f"stale: from {clock_time(known.fetched_at)}" if stale
                               else f"refreshed {clock_time(known.fetched_at)}")
        text.update(summary(stats))
        whole = stats.responses
        self.query_one("#stats-clients", TopPanel).show(stats.top_clients, whole, stale)
        self.query_one("#stats-routes", TopPanel).show(stats.top_routes, whole, stale)
        self.query_one("#stats-proxies", TopPanel).show(stats.top_proxy_chains, whole, stale)

"""The main screen: header, problem banner, health, figures and the events table, kept live.

One worker at a time asks the appliance (``@work(thread=True, exclusive=True)``: a refresh
asked for with ``r`` cancels the one in flight, whose late answer is then dropped). The next
poll is scheduled when an answer has been applied: every ``interval`` seconds while all is well,
backing off while the appliance cannot be reached. Nothing here raises into Textual: every
problem becomes a banner line or a notification.
"""

from __future__ import annotations

from typing import Callable

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Input
from textual.worker import get_current_worker

from ..client import ApplianceClient
from ..reading import Reading, gather
from ..safetext import visible
from ..state import DashboardState
from ..stats import StatsState
from ..widgets.banner import Banner, banner_lines
from ..widgets.events import EventsPanel, EventsTable
from ..widgets.figures import FiguresPanel
from ..widgets.header import ApplianceHeader
from ..widgets.health import HealthPanel


class MainScreen(Screen):
    BINDINGS = [
        Binding("r", "refresh", "Refresh"),
        Binding("f", "filter", "Filter"),
        Binding("slash", "filter", "Filter", show=False),
        Binding("space", "pause", "Pause"),
        Binding("s", "stats", "Stats"),
        Binding("d", "dead_letters", "Dead letters"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("question_mark", "help", "Help"),
    ]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (78, "-normal"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (34, "-tall")]

    def __init__(self, client: ApplianceClient, *, interval: float, clock: Callable[[], float],
                 history_minutes: int) -> None:
        super().__init__()
        self.client = client
        self.clock = clock
        self.state = DashboardState(client.base_url, interval, history_minutes)
        self.stats = StatsState()  # the last /events/stats, kept while the stats screen is closed
        self.next_poll_at: float | None = None
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield ApplianceHeader(id="header")
        yield Banner(id="banner")
        with Horizontal(id="top"):
            yield HealthPanel(id="health")
            yield FiguresPanel(id="figures")
        yield EventsPanel(id="events")
        yield Footer()

    def on_mount(self) -> None:
        self.redraw()
        self.set_interval(1.0, self.redraw)  # durations and the retry countdown move on
        self.poll()

    # --- polling ---------------------------------------------------------------------------

    def poll(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer, self.next_poll_at = None, None
        minutes, since = self.state.wants_history
        self.fetch(minutes, since, self.state.wants_version)

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def fetch(self, history_minutes: int, history_since: str | None, want_version: bool) -> None:
        worker = get_current_worker()
        reading = gather(self.client, self.clock(), history_minutes=history_minutes,
                         history_since=history_since, want_version=want_version)
        if not worker.is_cancelled:  # a newer refresh was asked for: its answer wins
            self.app.call_from_thread(self.apply_reading, reading)

    def apply_reading(self, reading: Reading) -> None:
        try:
            fresh, transition = self.state.apply(reading)
            self.query_one(EventsPanel).add_events(fresh, self.state.own_events)
            if transition == "lost":
                self.notify(visible(f"Lost the appliance: {self.state.unreachable}"),
                            severity="error", markup=False)
            elif transition == "recovered":
                self.notify("Reconnected to the appliance", severity="information", markup=False)
        except Exception as exc:  # an answer shaped beyond our guards: say so, keep polling
            self.notify(visible(f"Could not show this refresh: {exc!r}"), severity="error",
                        markup=False)
        finally:  # whatever happened, the next poll is scheduled
            delay = self.state.retry_delay()
            self.next_poll_at = self.clock() + delay
            self._timer = self.set_timer(delay, self.poll)
            self.redraw()

    def redraw(self) -> None:
        now, state = self.clock(), self.state
        retry_in = None if self.next_poll_at is None else self.next_poll_at - now
        self.query_one(ApplianceHeader).show(state)
        self.query_one(Banner).show(banner_lines(state, retry_in))
        self.query_one(HealthPanel).show(state, now)
        self.query_one(FiguresPanel).show(state, now)

    # --- actions ---------------------------------------------------------------------------

    def action_refresh(self) -> None:
        self.poll()

    def action_pause(self) -> None:
        paused = self.query_one(EventsPanel).toggle_pause()
        self.notify("Events paused: space resumes" if paused else "Events resumed", timeout=2,
                    markup=False)

    def action_filter(self) -> None:
        panel = self.query_one(EventsPanel)
        panel.add_class("-filtering")
        panel.query_one("#filter", Input).focus()

    def action_clear_filter(self) -> None:
        panel = self.query_one(EventsPanel)
        field = panel.query_one("#filter", Input)
        field.value = ""
        panel.set_query("", self.state.events.values())
        panel.remove_class("-filtering")
        panel.table.focus()

    def action_stats(self) -> None:
        from .stats import StatsScreen
        self.app.push_screen(StatsScreen(self.client, self.state, self.stats, clock=self.clock))

    def action_dead_letters(self) -> None:
        from .dead_letters import DeadLettersScreen
        self.app.push_screen(DeadLettersScreen(self.client, self.state))

    def action_help(self) -> None:
        from .help import HelpScreen, help_lines
        bindings = [*self.app.BINDINGS, *self.BINDINGS, *EventsTable.BINDINGS]
        self.app.push_screen(HelpScreen(help_lines(bindings)))

    # --- messages --------------------------------------------------------------------------

    def on_input_changed(self, message: Input.Changed) -> None:
        self.query_one(EventsPanel).set_query(message.value, self.state.events.values())

    def on_input_submitted(self, message: Input.Submitted) -> None:
        panel = self.query_one(EventsPanel)
        if not message.value.strip():
            panel.remove_class("-filtering")
        panel.table.focus()

    def on_data_table_row_selected(self, message: DataTable.RowSelected) -> None:
        event = self.state.events.get(str(message.row_key.value))
        if event is None:
            self.notify("That event is no longer in memory", severity="warning", markup=False)
            return
        from .detail import EventDetailScreen
        self.app.push_screen(EventDetailScreen(event))

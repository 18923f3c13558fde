"""The recent events table: newest first, like /events answers, with a filter line and a pause.

It opens on the newest row, at the top, where a table starts: nothing needs scrolling first.
Rows are keyed by event_id and only new ones are added, above the others; what is on screen
never moves under the reader: the table follows the newest row only while the cursor is on it
(the top row), otherwise cursor and view keep to the rows they were on.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Input

from ..event_log import MAX_EVENTS, event_key
from ..format import event_time
from ..safetext import plain

COLUMNS = ("time", "type", "method", "path", "status", "user_ip", "request_id")
PATH_WIDTH = 20  # characters of a path shown; the detail view (enter) has all of it
REQUEST_ID_WIDTH = 8  # enough to tell requests apart at a glance
TRIM_SLACK = MAX_EVENTS  # rows past MAX_EVENTS before the oldest go, all at once (see _trim)


def status_cell(status: Any) -> Text:
    if not isinstance(status, int):
        return Text("")
    style = "bold red" if status >= 500 else "yellow" if status >= 400 else "green"
    return Text(str(status), style=style)


def shorten(text: Text, width: int) -> Text:
    if len(text) <= width:
        return text
    short = text[: width - 1]
    short.append("…")
    return short


class TimeCell(Text):
    """The time shown, carrying the row's place in arrival order (what the table sorts on)."""

    arrival: int = 0


def time_cell(stamp: Any, arrival: int) -> TimeCell:
    cell = TimeCell()
    cell.append(plain(event_time(stamp)))
    cell.arrival = arrival
    return cell


def cells(event: dict[str, Any], arrival: int = 0) -> tuple[Text, ...]:
    """The row of an event: every field as plain Text (an event's fields are its clients')."""
    return (time_cell(event.get("occurred_at"), arrival), plain(event.get("event_type", "")),
            plain(event.get("method") or ""),
            shorten(plain(event.get("path") or event.get("topic") or ""), PATH_WIDTH),
            status_cell(event.get("status")), plain(event.get("user_ip") or ""),
            shorten(plain(event.get("request_id") or ""), REQUEST_ID_WIDTH + 1))


def matches(event: dict[str, Any], query: str) -> bool:
    """``type:<prefix>`` matches the event type; any other text, anywhere in the event."""
    query = query.strip().lower()
    if not query:
        return True
    if query.startswith("type:"):
        return str(event.get("event_type", "")).lower().startswith(query[5:].strip())
    return query in json.dumps(event, default=str).lower()


class EventsTable(DataTable):
    """A DataTable that repaints once it has widened its columns for new rows.

    DataTable measures new rows when it is next idle and widens the columns then, but its
    render caches are keyed by a change counter that the widening leaves alone: a frame drawn
    between add_row and that moment stays on screen, every column at its header's width ("16:2"
    for a time, "/old" for a path), until the next change (Textual issue #4470, open; seen on
    Textual 8.2.8). The widening always grows the table's scrollable width, so a watcher of
    ``virtual_size`` sees it; rewriting a cell with its own value (``update_cell``, a public
    change) then repaints every row at the new widths. Public API only:
    tests/test_dashboard_textual.py checks what this relies on."""

    _drawn_widths: tuple[int, ...] = ()  # the column widths the rows on screen were drawn at

    def on_mount(self) -> None:
        self.watch(self, "virtual_size", self._repaint_if_widened, init=False)

    def _repaint_if_widened(self) -> None:
        widths = tuple(column.get_render_width(self) for column in self.ordered_columns)
        if widths == self._drawn_widths:
            return
        self._drawn_widths = widths
        if self.row_count:
            row, column = self.ordered_rows[0].key, self.ordered_columns[0].key
            self.update_cell(row, column, self.get_cell(row, column))


class EventsPanel(Vertical):
    """A DataTable of events and the filter input below it."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.query_text = ""
        self.paused = False
        self.pending: list[dict[str, Any]] = []  # arrived while paused
        self.own_hidden = 0  # the dashboard's own polls, recorded as events and not shown
        self._arrivals = 0  # rows added so far: the newest row has the largest number

    def compose(self) -> ComposeResult:
        table = EventsTable(id="events-table", cursor_type="row", zebra_stripes=True)
        for name in COLUMNS:
            table.add_column(name, key=name)
        yield table
        yield Input(placeholder="filter: text, or type:<event type>  (enter: keep, esc: clear)",
                    id="filter")

    @property
    def table(self) -> DataTable:
        return self.query_one("#events-table", DataTable)

    # --- rows ------------------------------------------------------------------------------

    def add_events(self, events: Iterable[dict[str, Any]], own_hidden: int = 0) -> None:
        """Add ``events`` (oldest first) above the rows there are."""
        events, self.own_hidden = list(events), own_hidden
        if self.paused:
            self.pending.extend(events)
        else:
            self._insert(events)
        self._retitle()

    def _insert(self, events: list[dict[str, Any]]) -> None:
        table = self.table
        following = table.row_count == 0 or table.cursor_row == 0
        selected, scroll = self.selected_key(), table.scroll_y
        added = 0
        for event in events:
            key = event_key(event)
            if matches(event, self.query_text) and key not in table.rows:
                self._arrivals += 1
                table.add_row(*cells(event, self._arrivals), key=key)
                added += 1
        if not added:
            return
        self._newest_first()
        if following or selected is None:
            table.move_cursor(row=0)
            return
        if selected not in table.rows:  # the reader was among the oldest, and they went
            table.move_cursor(row=table.row_count - 1)
            return
        # The new rows went in above: the selected one, and the view with it, moves down by as
        # many, once the table has grown (after the refresh) so that the scroll is not clamped.
        table.move_cursor(row=table.get_row_index(selected), scroll=False)
        table.call_after_refresh(table.scroll_to, y=scroll + added, animate=False)

    def _newest_first(self) -> None:
        """Sort by arrival, newest on top (5 ms for 5,000 rows); past MAX_EVENTS + TRIM_SLACK
        rows, the oldest go down to MAX_EVENTS, as in the state."""
        table = self.table
        table.sort("time", key=lambda time: time.arrival, reverse=True)
        if table.row_count > MAX_EVENTS + TRIM_SLACK:
            self._trim()

    def _trim(self) -> None:
        """Keep the newest MAX_EVENTS rows, in one rebuild: DataTable.remove_row renumbers every
        row, ~25 ms each at 5,000 rows (2.5 s for 100), while adding 5,000 again takes ~0.3 s."""
        table = self.table
        kept = [(row.key, table.get_row(row.key)) for row in table.ordered_rows[:MAX_EVENTS]]
        table.clear()
        for key, values in kept:
            table.add_row(*values, key=key.value)

    def rebuild(self, events: Iterable[dict[str, Any]]) -> None:
        """Show ``events`` (oldest first) afresh after the filter changed, keeping the selected
        event if it stays, else on the newest."""
        table = self.table
        selected = self.selected_key()
        table.clear()
        for event in events:
            if matches(event, self.query_text):
                self._arrivals += 1
                table.add_row(*cells(event, self._arrivals), key=event_key(event))
        self._newest_first()
        if selected is not None and selected in table.rows:
            table.move_cursor(row=table.get_row_index(selected))
        elif table.row_count:
            table.move_cursor(row=0)
        self._retitle()

    def selected_key(self) -> str | None:
        table = self.table
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    # --- pause and filter ------------------------------------------------------------------

    def toggle_pause(self) -> bool:
        self.paused = not self.paused
        if not self.paused and self.pending:
            pending, self.pending = self.pending, []
            self._insert(pending)
        self._retitle()
        return self.paused

    def set_query(self, text: str, events: Iterable[dict[str, Any]]) -> None:
        if text.strip() != self.query_text:
            self.query_text = text.strip()
            self.rebuild(events)

    def _retitle(self) -> None:
        parts = [f"Events {self.table.row_count}"]
        if self.query_text:
            parts.append(f"filter “{self.query_text}”")
        if self.paused:
            parts.append(f"⏸ PAUSED ({len(self.pending)} new)")
        if self.own_hidden:
            parts.append(f"{self.own_hidden} own polls hidden")
        self.border_title = plain(" · ".join(parts))  # the filter is typed text: never markup

"""The recent events table: new rows appended at the bottom, a filter line, and a pause.

Rows are keyed by event_id and only new ones are added, so what is on screen never moves
under the reader: the table follows the newest row only while the cursor is on the last row.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Input

from ..format import event_time
from ..state import event_key

COLUMNS = ("time", "type", "method", "path", "status", "user_ip", "request_id")
PATH_WIDTH = 20  # characters of a path shown; the detail view (enter) has all of it
REQUEST_ID_WIDTH = 8  # enough to tell requests apart at a glance


def status_cell(status: Any) -> Text:
    if not isinstance(status, int):
        return Text("")
    style = "bold red" if status >= 500 else "yellow" if status >= 400 else "green"
    return Text(str(status), style=style)


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def cells(event: dict[str, Any]) -> tuple[Any, ...]:
    return (event_time(event.get("occurred_at")), str(event.get("event_type", "")),
            str(event.get("method") or ""),
            shorten(str(event.get("path") or event.get("topic") or ""), PATH_WIDTH),
            status_cell(event.get("status")), str(event.get("user_ip") or ""),
            shorten(str(event.get("request_id") or ""), REQUEST_ID_WIDTH + 1))


def matches(event: dict[str, Any], query: str) -> bool:
    """``type:<prefix>`` matches the event type; any other text, anywhere in the event."""
    query = query.strip().lower()
    if not query:
        return True
    if query.startswith("type:"):
        return str(event.get("event_type", "")).lower().startswith(query[5:].strip())
    return query in json.dumps(event, default=str).lower()


class EventsPanel(Vertical):
    """A DataTable of events and the filter input below it."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.query_text = ""
        self.paused = False
        self.pending: list[dict[str, Any]] = []  # arrived while paused
        self.own_hidden = 0  # the dashboard's own polls, recorded as events and not shown

    def compose(self) -> ComposeResult:
        table: DataTable = DataTable(id="events-table", cursor_type="row", zebra_stripes=True)
        table.add_columns(*COLUMNS)
        yield table
        yield Input(placeholder="filter: text, or type:<event type>  (enter: keep, esc: clear)",
                    id="filter")

    @property
    def table(self) -> DataTable:
        return self.query_one("#events-table", DataTable)

    # --- rows ------------------------------------------------------------------------------

    def add_events(self, events: Iterable[dict[str, Any]], own_hidden: int = 0) -> None:
        events, self.own_hidden = list(events), own_hidden
        if self.paused:
            self.pending.extend(events)
        else:
            self._append(events)
        self._retitle()

    def _append(self, events: list[dict[str, Any]]) -> None:
        table = self.table
        following = table.row_count == 0 or table.cursor_row >= table.row_count - 1
        added = 0
        for event in events:
            key = event_key(event)
            if matches(event, self.query_text) and key not in table.rows:
                table.add_row(*cells(event), key=key)
                added += 1
        if added and following:
            table.move_cursor(row=table.row_count - 1)
            # and once the layout has settled, really to the bottom (a scrollbar that appears
            # with the new rows would otherwise hide the newest one)
            table.call_after_refresh(table.scroll_end, animate=False, x_axis=False)

    def on_resize(self) -> None:
        table = self.table
        if table.row_count and table.cursor_row >= table.row_count - 1:
            self.call_after_refresh(table.move_cursor, row=table.row_count - 1)  # keep following

    def rebuild(self, events: Iterable[dict[str, Any]]) -> None:
        """Show ``events`` afresh (after the filter changed), keeping the selected event if it stays."""
        table = self.table
        selected = self.selected_key()
        table.clear()
        for event in events:
            if matches(event, self.query_text):
                table.add_row(*cells(event), key=event_key(event))
        if selected is not None and selected in table.rows:
            table.move_cursor(row=table.get_row_index(selected))
        elif table.row_count:
            table.move_cursor(row=table.row_count - 1)
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
            self._append(pending)
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
        self.border_title = " · ".join(parts)

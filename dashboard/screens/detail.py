"""One event, all of it, as JSON; esc goes back to the table where it was."""

from __future__ import annotations

from typing import Any

from rich.syntax import Syntax
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from ..safetext import json_text, plain


class EventDetailScreen(Screen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, event: dict[str, Any]) -> None:
        super().__init__()
        self.event = event

    def compose(self) -> ComposeResult:
        title = plain(f"{self.event.get('event_type', 'event')} · {self.event.get('occurred_at', '')}")
        body = json_text(self.event)
        with VerticalScroll(id="detail") as scroll:
            scroll.border_title = title
            scroll.border_subtitle = "esc: back"
            yield Static(Syntax(body, "json", theme="ansi_dark", background_color="default",
                                word_wrap=True), id="detail-json")
        yield Footer()

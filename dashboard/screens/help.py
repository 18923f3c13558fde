"""Every key, in a dialog over the dashboard; esc or ? closes it.

The lines are made from the bindings themselves: a key is listed because it is bound, beside
what its action does (HELP), so the help cannot name a key that does nothing nor miss one.
"""

from __future__ import annotations

from typing import Iterable

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

# (actions, what they do) in the order the help lists them; a line shows the keys bound to its
# actions, "f or /" for two keys of one action.
HELP = (
    (("quit",), "quit"),
    (("refresh",), "refresh now (and retry at once after a failure)"),
    (("filter",), "filter the events: any text, or type:<event type>"),
    (("select_cursor",), "open the selected event's JSON; in the filter: keep it"),
    (("clear_filter",), "clear the filter; back from the event view"),
    (("pause",), "pause / resume new rows in the events table"),
    (("stats",), "the last hour: top clients, routes, answers, latency"),
    (("dead_letters",), "dead letters by reason, and the newest of them"),
    (("cursor_up", "cursor_down", "page_up", "page_down"),
     "move; on the top row (the newest) it follows new events"),
    (("scroll_home", "scroll_end"), "newest / oldest event"),
    (("help",), "this help"),
)
# How the help writes a key; any other key as Textual names it ("q", "space", "enter").
KEY_NAMES = {"escape": "esc", "slash": "/", "question_mark": "?", "up": "↑", "down": "↓",
             "pageup": "PgUp", "pagedown": "PgDn", "home": "Home", "end": "End"}


def help_lines(bindings: Iterable[BindingType]) -> tuple[tuple[str, str], ...]:
    """(keys, what they do) for the actions of HELP that ``bindings`` bind, in HELP's order."""
    keys: dict[str, list[str]] = {}
    for binding in Binding.make_bindings(bindings):
        keys.setdefault(binding.action, []).append(KEY_NAMES.get(binding.key, binding.key))
    lines = []
    for actions, what in HELP:
        bound = [" or ".join(keys[action]) for action in actions if action in keys]
        if bound:
            lines.append((" ".join(bound), what))
    return tuple(lines)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark", "app.pop_screen", "Close")]

    def __init__(self, keys: tuple[tuple[str, str], ...]) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for key, what in self.keys:
            table.add_row(key, what)
        with Vertical(id="help") as box:
            box.border_title = "Keys"
            box.border_subtitle = "esc or ?: close"
            yield Static(table)

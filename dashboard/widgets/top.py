"""The stats screen's panels: the hour in numbers, and the top lists (clients, routes, proxy chains)."""

from __future__ import annotations

from rich.bar import Bar
from rich.table import Table
from rich.text import Text
from textual.containers import Vertical
from textual.widgets import Static

from ..format import event_time, figure_value
from ..safetext import plain
from ..stats import Entry, Stats

CLASS_STYLES = {"2xx": "green", "3xx": "cyan", "4xx": "yellow", "5xx": "bold red"}


def number(count: int) -> str:
    return f"{count:,}"


def share(count: int, whole: int) -> str:
    return f"{100 * count / whole:.1f}%" if whole else ""


def window(stats: Stats) -> str:
    """09:30:45–10:30:45Z: the window the numbers are of (UTC, like every stamp)."""
    return f"{event_time(stats.since)}–{event_time(stats.until)}Z"


def summary(stats: Stats) -> Text:
    """Three lines: events by type, answers by status class, and the duration percentiles."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"{number(stats.total)} events", style="bold")
    for index, (name, count) in enumerate(sorted(stats.by_type.items(), key=lambda kv: (-kv[1], kv[0]))):
        if count:
            text.append(": " if index == 0 else " · ")
            text.append(plain(f"{name} {number(count)}"))
    text.append("\nanswers ", style="bold")
    classes = sorted(stats.by_status_class.items())
    for index, (name, count) in enumerate(classes):
        text.append(" · " if index else "")
        text.append(plain(f"{name} {number(count)}", CLASS_STYLES.get(name, "")))
    if not classes:
        text.append("none", style="dim")
    text.append("\nduration ", style="bold")
    text.append(" · ".join(f"{p} {figure_value(stats.duration_ms.get(p), 'ms')}"
                           for p in ("p50", "p95", "p99")))
    return text


def top_table(entries: tuple[Entry, ...], whole: int) -> Table:
    """Name, requests, their share of the hour's answers, and a bar against the first entry."""
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column("name", no_wrap=True, overflow="ellipsis")  # its width first, the bar the rest
    counts = [number(e.count) for e in entries]
    # the numbers stay whole in a narrow terminal: the name is what gets cut
    table.add_column("count", justify="right", no_wrap=True, min_width=max(map(len, counts), default=1))
    table.add_column("share", justify="right", no_wrap=True, min_width=6)
    table.add_column("bar", ratio=1, no_wrap=True)
    biggest = max((e.count for e in entries), default=0)
    for entry, count in zip(entries, counts):
        table.add_row(plain(entry.name or "(none)"), count, Text(share(entry.count, whole), style="dim"),
                      Bar(biggest or 1, 0, entry.count, color="cyan"))
    return table


class TopPanel(Vertical):
    """A bordered top list; says so when the hour had none."""

    def __init__(self, title: str, none: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.title, self.none = title, none

    def compose(self):
        yield Static()

    def show(self, entries: tuple[Entry, ...] | None, whole: int, stale: bool) -> None:
        self.border_title = self.title + (" (stale)" if stale else "")
        self.set_class(stale, "-stale")
        body = self.query_one(Static)
        if entries is None:
            body.update(Text("asking /events/stats…", style="dim"))
        elif not entries:
            body.update(Text(self.none, style="dim"))
        else:
            body.update(top_table(entries, whole))

"""The health panel: one line per component, state word with symbol and colour, since when, detail."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from ..format import duration, state_badge
from ..metrics import parse_iso
from ..safetext import plain
from ..state import DashboardState

# component name -> label, in the order shown; unknown components follow, sorted
LABELS = {
    "api": "API", "kafka": "Kafka", "database": "Database", "spool": "Spool", "disk": "Disk",
    "otel": "OpenTelemetry", "prometheus": "Prometheus",
    "process.api": "proc api", "process.consumer": "proc consumer",
    "process.agent": "proc agent", "process.broker": "proc broker",
    "processes": "processes",
}


def ordered(components: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    known = [(name, components[name]) for name in LABELS if name in components]
    return known + sorted((n, c) for n, c in components.items() if n not in LABELS)


MAX_PARTITIONS_SHOWN = 8


def detail_of(name: str, entry: dict[str, Any]) -> str:
    """The component's detail; Kafka's with its lag per partition, so a stuck one stands out."""
    detail = str(entry.get("detail", ""))
    data = entry.get("data")
    lag = data.get("lag") if name == "kafka" and isinstance(data, dict) else None
    if not isinstance(lag, dict) or not lag:
        return detail
    parts = sorted(lag.items(), key=lambda item: (len(str(item[0])), str(item[0])))
    shown = ", ".join(f"p{p} {n}" for p, n in parts[:MAX_PARTITIONS_SHOWN])
    more = f", +{len(parts) - MAX_PARTITIONS_SHOWN}" if len(parts) > MAX_PARTITIONS_SHOWN else ""
    return f"{detail} · lag {shown}{more}"


def health_table(state: DashboardState, now: float) -> Table:
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column("state", width=10, no_wrap=True)
    table.add_column("component", no_wrap=True)
    table.add_column("for", justify="right", no_wrap=True)
    table.add_column("detail", ratio=1, no_wrap=True, overflow="ellipsis")
    for name, entry in ordered(state.components):
        since = parse_iso(entry.get("since"))
        badge, style = state_badge(entry.get("state"))
        table.add_row(plain(badge, style), plain(LABELS.get(name, name)),
                      Text(duration(None if since is None else now - since), style="dim"),
                      plain(detail_of(name, entry)))
    agent = state.agent
    if agent:
        badge, style = state_badge(agent.get("state"))
        table.add_row(plain(badge, style), "status agent", "", plain(agent.get("detail", "")))
    return table


class HealthPanel(VerticalScroll):
    """Scrolls when there are more components than lines."""

    can_focus = False

    def compose(self):
        yield Static(id="health-table")

    def show(self, state: DashboardState, now: float) -> None:
        overall = state.status.get("overall")
        if overall:
            badge, _ = state_badge(overall)
            stale = " (stale)" if state.status.get("stale") or state.unreachable else ""
            self.border_title = plain(f"Health {badge}{stale}")
        else:
            self.border_title = "Health"
        self.set_class(bool(state.unreachable), "-stale")
        body = self.query_one("#health-table", Static)
        if state.components or state.agent:
            body.update(health_table(state, now))
        else:
            body.update(Text("waiting for the first answer of /status…", style="dim"))

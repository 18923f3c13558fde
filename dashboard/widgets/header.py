"""One line on top: which appliance, its version, host and uptime, and when we last heard from it."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ..format import clock_time, duration, state_badge
from ..safetext import plain
from ..state import DashboardState


class ApplianceHeader(Static):
    """URL · version · hostname · uptime · last refresh."""

    def show(self, state: DashboardState) -> None:
        status = state.status
        if not status:
            self.update(Text.assemble(plain(state.url, "bold"), (" │ ", "dim"),
                                      ("not connected yet", "dim"), no_wrap=True))
            return
        version = state.version.get("version") or status.get("version") or "?"
        uptime = status.get("api_uptime_s")
        parts = [
            (state.url, "bold"),
            (f"v{version}", ""),
            (str(status.get("hostname") or "?"), ""),
            (f"up {duration(uptime)}" if isinstance(uptime, (int, float)) else "up ?", ""),
            (f"refreshed {clock_time(state.last_refresh)}", "dim" if state.unreachable else ""),
        ]
        line = Text(no_wrap=True, overflow="ellipsis")
        if status.get("overall") and state.connected:
            badge, style = state_badge(status["overall"])
            line.append(plain(f"{badge} ", style))
        for index, (text, style) in enumerate(parts):
            if index:
                line.append(" │ ", style="dim")
            line.append(plain(text, style))
        self.update(line)

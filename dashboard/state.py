"""What the dashboard knows: each poll's answers (a Reading) folded into the state the screens
draw. ``DashboardState.apply`` runs on the UI thread and tolerates any shape of JSON the
appliance might send.

The jobs are split: the connection (connected, failures, retry), the figures over time, and the
events seen; DashboardState holds the latest /status and /version beside them and hands each
part what is its to know.
"""

from __future__ import annotations

from typing import Any

from .client import ApplianceError
from .connection import Connection
from .event_log import EventLog
from .figures import Figures, mapping
from .metrics import Series
from .reading import Reading


class DashboardState:
    """Everything known so far, fed one Reading at a time."""

    def __init__(self, url: str, interval: float, history_minutes: int) -> None:
        self.url = url
        self.interval = interval
        self.history_minutes = history_minutes
        self.connection = Connection(interval)
        self.figures = Figures(history_minutes)
        self.log = EventLog()
        self.status: dict[str, Any] = {}
        self.version: dict[str, Any] = {}
        self.problems: dict[str, str] = {}

    # --- what the next poll should ask ---------------------------------------------------

    @property
    def wants_history(self) -> tuple[int, str | None]:
        """(minutes, since) for /status?history=&since=: every poll gets the rounds it lacks,
        after a reconnection too, and never the whole window again."""
        return self.history_minutes, self.figures.history_since

    @property
    def wants_version(self) -> bool:
        return not self.version

    def retry_delay(self) -> float:
        return self.connection.retry_delay()

    # --- folding a reading in ------------------------------------------------------------

    def apply(self, reading: Reading) -> tuple[list[dict[str, Any]], str | None]:
        """Fold in one poll; returns (new events oldest first, "lost"/"recovered"/None)."""
        transition = self.connection.apply(reading, known=bool(self.status))
        if reading.failure is not None:
            self.figures.forget_scrape()
            if reading.failure.kind == ApplianceError.UNREACHABLE:
                self.version = {}  # it may come back as another version
        self.problems = {name: exc.reason for name, exc in reading.problems.items()
                         if name != "status" or reading.failure is None}
        if reading.status is not None:
            self.figures.add_status(reading.status)
            self.status = reading.status
        if reading.version is not None:
            self.version = reading.version
        if (unreadable := self.figures.add_metrics(reading)) is not None:
            self.problems["metrics"] = unreadable
        return self.log.add(reading.events or []), transition

    # --- what the screens draw -----------------------------------------------------------

    @property
    def events(self) -> dict[str, dict[str, Any]]:
        return self.log.events

    @property
    def own_events(self) -> int:
        return self.log.own

    @property
    def failure(self) -> ApplianceError | None:
        return self.connection.failure

    @property
    def connected(self) -> bool:
        return self.connection.connected

    @property
    def last_refresh(self) -> float | None:
        return self.connection.last_refresh

    @property
    def unreachable(self) -> str | None:
        """Why there is no current /status, or None while there is."""
        return self.connection.unreachable

    @property
    def metrics_state(self) -> str:
        return self.figures.metrics_state

    @property
    def history_since(self) -> str | None:
        return self.figures.history_since

    @property
    def status_series(self) -> dict[str, Series]:
        return self.figures.status_series

    def figure(self, name: str, now: float) -> tuple[list[tuple[float, float]], float | None, str]:
        return self.figures.figure(name, now)

    @property
    def components(self) -> dict[str, dict[str, Any]]:
        return {name: mapping(entry) for name, entry in mapping(self.status.get("components")).items()}

    @property
    def agent(self) -> dict[str, Any]:
        return mapping(self.status.get("agent"))

"""Whether the appliance answers: connected or not, since when, and how long to wait for the
next attempt while it fails."""

from __future__ import annotations

from .client import ApplianceError
from .reading import Reading

MAX_RETRY = 30.0  # seconds: the longest wait between two attempts while the appliance fails


class Connection:
    """Fed one Reading at a time; a Reading without /status is a failed attempt."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.failure: ApplianceError | None = None  # why the last poll got no /status
        self.failures = 0  # consecutive polls without /status
        self.connected = False
        self.last_refresh: float | None = None

    def apply(self, reading: Reading, *, known: bool) -> str | None:
        """"lost", "recovered" or None; ``known``: a /status came before this reading."""
        failure = reading.failure
        if failure is not None:
            self.failure = failure
            self.failures += 1
            was, self.connected = self.connected, False
            return "lost" if was else None
        self.failure, self.failures, self.last_refresh = None, 0, reading.at
        was, self.connected = self.connected, True
        # Not connected but with a status from before: this success is a reconnection.
        return "recovered" if not was and known else None

    def retry_delay(self) -> float:
        """interval while all is well; doubling per failed attempt up to MAX_RETRY."""
        if not self.failures:
            return self.interval
        return min(self.interval * 2 ** (self.failures - 1), max(self.interval, MAX_RETRY))

    @property
    def unreachable(self) -> str | None:
        """Why there is no current /status, or None while there is."""
        return None if self.failure is None else self.failure.reason

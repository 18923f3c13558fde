"""Serving state: set by the server loop (serving/server.py), read by /readyz, and the
requests in flight, counted by the middleware, which the loop waits for when it shuts down."""

from __future__ import annotations

import threading


class Lifecycle:
    STARTING, SERVING, DRAINING = "starting", "serving", "draining"

    def __init__(self) -> None:
        self.state = self.STARTING
        self._in_flight = 0
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self.state == self.SERVING

    def serving(self) -> None:
        self.state = self.SERVING

    def draining(self) -> None:
        self.state = self.DRAINING

    def enter(self) -> None:
        with self._lock:
            self._in_flight += 1

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        return self._in_flight

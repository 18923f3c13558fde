"""Serving state shared by the server loop, the signal handler and /readyz."""

from __future__ import annotations

import threading
import time


class Lifecycle:
    STARTING, SERVING, DRAINING = "starting", "serving", "draining"

    def __init__(self) -> None:
        self.state = self.STARTING
        self._in_flight = 0
        self._idle = threading.Condition()

    @property
    def ready(self) -> bool:
        return self.state == self.SERVING

    def serving(self) -> None:
        self.state = self.SERVING

    def draining(self) -> None:
        self.state = self.DRAINING

    def enter(self) -> None:
        with self._idle:
            self._in_flight += 1

    def leave(self) -> None:
        with self._idle:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.notify_all()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def wait_idle(self, timeout: float) -> bool:
        """Block until no request is in flight or the timeout passes; True when idle."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

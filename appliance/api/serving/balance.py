"""Connections shared out evenly between the API's workers (WEB_PROCESSES > 1).

The workers accept from one listening socket, and Waitress accepts whenever it is readable:
the first worker to wake took every connection of a burst. Under wrk -c4 one worker held all
four and the other stayed idle (1,610 requests/s for the whole appliance instead of ~2,000).

So each worker publishes how many connections it holds, and when it last looked, in a few bytes
of memory every worker maps (a memfd the parent made); a worker accepts only while it holds no
more than the least loaded of its live siblings. One that has not looked for STALE_MS (stuck,
or not serving yet) is left out, so the others take everything; the parent clears the slot of
a worker that died, so that one is left out at once.

The count is checked and published around every accept (SharedAccept), not once per turn of
the loop: a worker accepts one connection per turn, and while its count was published only at
the end of the turn, a sibling that had not published yet (its first turn waits up to 0.1 s
for the socket) looked gone, and one worker took all four connections of a burst (1 run in 9
of the test). Two workers may still check at the same moment and both accept; they then hold
one more each, so the counts never differ by more than one.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from typing import Any, Callable

SLOT = struct.Struct("qq")  # connections held, last look (ms of CLOCK_MONOTONIC, system-wide)
STALE_MS = 1000  # a serving worker looks at least every 0.1 s (serving/server.py LOOP_TICK)


def shared_memory(workers: int) -> int:
    """The parent's part: a file descriptor for the workers to inherit."""
    fd = os.memfd_create("simple-time-service-connections")
    os.ftruncate(fd, SLOT.size * workers)
    return fd


def _now_ms() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1_000_000


class ConnectionBalance:
    def __init__(self, fd: int, index: int, workers: int) -> None:
        self.memory = mmap.mmap(fd, SLOT.size * workers)
        self.index, self.workers = index, workers
        self.mine = SLOT.size * index

    def may_accept(self, connections: int) -> bool:
        """Publish ``connections``; True while no live sibling holds fewer."""
        now = _now_ms()
        self.publish(connections, now)
        for worker in range(self.workers):
            if worker != self.index:
                held, seen = SLOT.unpack_from(self.memory, SLOT.size * worker)
                if now - seen < STALE_MS and held < connections:
                    return False
        return True

    def publish(self, connections: int, now: int | None = None) -> None:
        SLOT.pack_into(self.memory, self.mine, connections, _now_ms() if now is None else now)

    def forget(self, worker: int) -> None:
        """The parent's part: ``worker`` died; leave it out now, not after STALE_MS."""
        SLOT.pack_into(self.memory, SLOT.size * worker, 0, 0)


class SharedAccept:
    """A worker's side of the balance: it accepts only while serving/balance.py says it may,
    and publishes its new count at once. ``tick`` keeps this worker's slot fresh between turns
    of the loop (and publishes connections that closed).

    A refusal leaves the listener in the poll set: while a connection waits, this worker's loop
    turns without sleeping until the sibling that holds fewer has taken it (microseconds to a
    few ms), and with none waiting it sleeps as usual. Taking the listener out of the set until
    the next look instead made both workers wait (A holds 1 and waits for B, B takes a second
    and waits for A): wrk -c32 on two workers had p99 400-500 ms instead of ~15, and a worker
    that looked again every 2 ms while it refused cost 2.9 % of a core when idle."""

    def __init__(self, balance: ConnectionBalance, connections: Callable[[], int],
                 interval: float) -> None:
        self.balance, self.connections = balance, connections
        self.interval = interval
        self._published, self._due = -1, 0.0

    def accept(self, accept: Callable[[], Any]) -> Any:
        """``accept()`` if this worker may take a connection now, else None."""
        held = self.connections()
        if not self.balance.may_accept(held):
            return None
        accepted = accept()
        if accepted is not None:
            self.balance.publish(held + 1)  # its channel joins the map after accept returns
        return accepted

    def tick(self, now: float) -> None:
        held = self.connections()
        if held != self._published or now >= self._due:
            self._published, self._due = held, now + self.interval
            self.balance.publish(held)

"""Connections shared out evenly between the API's workers (WEB_PROCESSES > 1).

The workers accept from one listening socket, and Waitress accepts whenever it is readable:
the first worker to wake took every connection of a burst. Under wrk -c4 one worker held all
four and the other stayed idle (1,610 requests/s for the whole appliance instead of ~2,000).

So each worker publishes how many connections it holds, and when it last looked, in a few bytes
of memory every worker maps (a memfd the parent made); a worker accepts only while it holds no
more than the least loaded of its live siblings. One that has not looked for STALE_MS (dead,
restarting, stuck) is left out, so the others take everything.
"""

from __future__ import annotations

import mmap
import os
import struct
import time

SLOT = struct.Struct("qq")  # connections held, last look (ms of CLOCK_MONOTONIC, system-wide)
STALE_MS = 1000  # a worker's loop looks at least every 0.1 s (api/server.py LOOP_TICK)


def shared_memory(workers: int) -> int:
    """The parent's part: a file descriptor for the workers to inherit."""
    fd = os.memfd_create("simple-time-service-connections")
    os.ftruncate(fd, SLOT.size * workers)
    return fd


class ConnectionBalance:
    def __init__(self, fd: int, index: int, workers: int) -> None:
        self.memory = mmap.mmap(fd, SLOT.size * workers)
        self.index, self.workers = index, workers
        self.mine = SLOT.size * index

    def may_accept(self, connections: int) -> bool:
        """Publish ``connections``; True while no live sibling holds fewer."""
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1_000_000
        SLOT.pack_into(self.memory, self.mine, connections, now)
        for worker in range(self.workers):
            if worker != self.index:
                held, seen = SLOT.unpack_from(self.memory, SLOT.size * worker)
                if now - seen < STALE_MS and held < connections:
                    return False
        return True

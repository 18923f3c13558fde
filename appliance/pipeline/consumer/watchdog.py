"""The consumer's progress watchdog: events wait, yet nothing is persisted.

The embedded broker's fetches can come back empty while the lag grows (its fetch cost grows
with the batches in a partition: docs/embedded-broker.md), and a client can wedge. Either way the
consumer looks alive. The watchdog turns "lag > 0 and no progress for STALL_AFTER seconds" into
a state the agent reports (DOWN, with the reason) and that the consumer acts on.
"""

from __future__ import annotations

import logging
import time

from appliance.core import sensors

log = logging.getLogger("appliance.consumer")
STALL_AFTER = 10.0  # seconds without progress while events wait: stalled
RECREATE_AFTER = 30.0  # seconds stalled before the consumer replaces its Kafka client


class ProgressWatchdog:
    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.lag: int | None = None
        self._progress_at = clock()
        self.stalled_since: float | None = None
        self.stalls = 0

    def progressed(self) -> None:
        """A batch was persisted."""
        self._progress_at = self.clock()

    def observe(self, lag: int | None, database_failing: bool) -> None:
        """Called about once a second with the current lag (None: unknown, e.g. no partitions)."""
        now = self.clock()
        self.lag = lag
        if not lag or database_failing:  # caught up, or a database fault (reported as such)
            self._progress_at = now
        if now - self._progress_at < STALL_AFTER:
            if self.stalled_since is not None:
                log.info("consumer progressing again", extra={"lag": lag})
            self.stalled_since = None
            return
        if self.stalled_since is None:
            self.stalled_since = now
            self.stalls += 1
            sensors.on_consumer_stalled()
            log.warning("consumer stalled: no progress while events wait",
                        extra={"lag": lag, "no_progress_s": round(now - self._progress_at, 1)})

    @property
    def no_progress_s(self) -> float:
        return self.clock() - self._progress_at

    def should_recreate(self) -> bool:
        """Stalled long enough that a new client is worth its group rejoin (~3 s)."""
        if self.stalled_since is None or self.clock() - self.stalled_since < RECREATE_AFTER:
            return False
        self.stalled_since = self._progress_at = self.clock()  # give the new client its chance
        return True

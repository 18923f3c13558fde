"""The consumer's report to the agent (schema/consumer_report.py), at most once a second,
with the progress watchdog's verdict folded in."""

from __future__ import annotations

import time

from appliance.pipeline.consumer.maintenance import Maintenance
from appliance.pipeline.consumer.watchdog import ProgressWatchdog
from appliance.pipeline.consumer.writer import BatchWriter
from appliance.schema.consumer_report import ConsumerReport

REPORT_INTERVAL = 1.0  # seconds between reports (and watchdog observations)


class Reporter:
    def __init__(self, path, writer: BatchWriter, watchdog: ProgressWatchdog,
                 maintenance: Maintenance | None = None) -> None:
        self.path = path
        self.writer = writer
        self.watchdog = watchdog
        self.maintenance = maintenance
        self._written = 0.0

    def due(self) -> bool:
        return time.monotonic() - self._written >= REPORT_INTERVAL

    def write(self, assigned: set[int]) -> None:
        self._written = time.monotonic()
        writer, dog = self.writer, self.watchdog
        report = ConsumerReport(
            assigned_partitions=sorted(assigned), persisted=dict(writer.persisted),
            dead_letters=writer.dead_letters, db_failing=writer.last_db_error is not None,
            last_db_error=writer.last_db_error, db_errors=writer.db_errors, lag=dog.lag,
            stalled=dog.stalled_since is not None, no_progress_s=round(dog.no_progress_s, 1),
            stalls=dog.stalls, last_persisted_at=writer.last_persisted_at,
            **self._retention())
        try:
            report.write(self.path)
        except OSError:
            pass  # the report is a courtesy to the agent; the events are what matter

    def _retention(self) -> dict:
        if self.maintenance is None:
            return {}
        return {"pruned": dict(self.maintenance.pruned),
                "oldest_event_at": self.maintenance.oldest_event_at,
                "db_size_mb": self.maintenance.size_mb}

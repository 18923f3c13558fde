"""The status agent's loop: every STATUS_INTERVAL, probe each component and record its health.

With the embedded broker it also keeps the broker fast and its memory bounded (recycler.py),
from a thread of its own so probe rounds go on being recorded meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Callable

from appliance.agent import probes, status_writer
from appliance.agent.probes import Result
from appliance.agent.processes import ProcessProbe
from appliance.agent.recycler import BrokerRecycler
from appliance.core import sensors
from appliance.core.config import Settings
from appliance.core.version import __version__
from appliance.schema.consumer_report import ConsumerReport
from appliance.schema.producer_status import ProducerStatus

log = logging.getLogger("appliance.agent")
# While the appliance starts, a component that comes up is reported within STARTUP_INTERVAL
# instead of STATUS_INTERVAL: the consumer gets its partition ~2 s after `up`, and /status said
# so only at the next round, 5 s after the first (`up` -> ready measured 6.9 s, bench/
# whole_appliance.py). Until every component is UP (or not run), for at most STARTUP_WINDOW.
STARTUP_INTERVAL = 0.25
STARTUP_WINDOW = 30.0
SETTLED_STATES = frozenset({"UP", "DISABLED"})


class Agent:
    def __init__(self, settings: Settings, stop: threading.Event) -> None:
        self.settings = settings
        self.stop = stop
        self.kafka = probes.KafkaProbe(settings)
        self.processes = ProcessProbe(settings)
        self.recycler = BrokerRecycler(settings, stop)

    def run(self) -> None:
        begun, starting = time.monotonic(), True
        while not self.stop.is_set():
            started = time.monotonic()
            results = self.round()
            self.recycler.consider(results.get("process.broker"), self.consumer_report())
            starting = starting and started - begun < STARTUP_WINDOW and not settled(results)
            interval = self.settings.status_interval
            if starting:
                interval = min(interval, STARTUP_INTERVAL)
            self.stop.wait(max(0.0, interval - (time.monotonic() - started)))
        self.recycler.join(timeout=5.0)
        self.kafka.close()

    def round(self) -> dict[str, Result]:
        """Probe everything once and record it; a failing probe is DOWN, never a crash."""
        settings = self.settings
        asks_api = settings.kafka_enabled and "api" in settings.programs
        api_kafka = probes.api_kafka_status(settings) if asks_api else None
        results = {name: safely(name, probe) for name, probe in self.probes(api_kafka).items()}
        self.processes.broker_extra = {"recycles": self.recycler.recycles,
                                       "last_recycle_reason": self.recycler.last_reason}
        results.update(safely_many("process", self.processes))
        sensors.on_probe_round(results)
        try:
            status_writer.record(results, datetime.now(timezone.utc),
                                 self.settings.status_interval, __version__)
        except Exception as exc:  # status.db trouble must not stop the probing
            log.warning("could not record status", extra={"error": str(exc)})
        return results

    def probes(self, api_kafka: ProducerStatus | None) -> dict[str, Callable[[], Result]]:
        settings = self.settings
        return {
            "api": lambda: probes.api(settings),
            "kafka": self.kafka,
            "database": lambda: probes.database(settings, self.consumer_report()),
            "spool": lambda: probes.spool(settings, api_kafka),
            "disk": lambda: probes.disk(settings),
            "otel": lambda: probes.otel(settings),
            "prometheus": lambda: probes.prometheus(settings),
        }

    def consumer_report(self) -> ConsumerReport | None:
        return ConsumerReport.read(self.settings.layout.consumer_report)


def settled(results: dict[str, Result]) -> bool:
    """Every component is UP or deliberately not there: the appliance has finished starting."""
    return all(state in SETTLED_STATES for state, _, _ in results.values())


def safely(name: str, probe: Callable[[], Result]) -> Result:
    try:
        return probe()
    except Exception as exc:  # a probe bug or surprise: report it as this component's state
        log.warning("probe failed", extra={"component": name, "error": repr(exc)})
        return "DOWN", f"probe failed: {exc}", {}


def safely_many(prefix: str, probe: Callable[[], dict[str, Result]]) -> dict[str, Result]:
    try:
        return probe()
    except Exception as exc:
        return {prefix: ("DOWN", f"probe failed: {exc}", {})}

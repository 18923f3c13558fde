"""The status agent: every STATUS_INTERVAL, probe each component and record its health.

With the embedded broker it also keeps the broker fast and its memory bounded (recycler.py),
from a thread of its own so probe rounds go on being recorded meanwhile.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

from appliance.core import logs, metrics
from appliance.agent import probes
from appliance.schema import status_db
from appliance import supervise
from appliance.core.metrics import M
from appliance.core.config import Settings
from appliance.pipeline.consumer.consumer import STATE_FILE
from appliance.agent.recycler import BrokerRecycler, ensure_broker_running
from appliance.core.version import __version__

log = logging.getLogger("appliance.agent")


class Agent:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop_requested = False
        self.kafka = probes.KafkaProbe(settings)
        self.restarts: dict[str, int] = {}
        self._pids: dict[str, int] = {}
        self._stop = threading.Event()
        self.recycler = BrokerRecycler(settings, self._stop)

    def request_stop(self, *_args) -> None:
        self.stop_requested = True
        self._stop.set()

    def run(self) -> int:
        # A pause file left by an agent killed mid-recycle would keep the producer spooling.
        self.settings.kafka_pause_file.unlink(missing_ok=True)
        if self.settings.embedded_broker:
            ensure_broker_running(self.settings)
        status_db.connect(self.settings.status_db_path)
        log.info("agent started", extra={"interval_s": self.settings.status_interval,
                                         "status_db": str(self.settings.status_db_path)})
        while not self.stop_requested:
            started = time.monotonic()
            results = self.round()
            self.recycler.consider(results.get("process.broker"), self.consumer_state())
            self._stop.wait(max(0.0, self.settings.status_interval - (time.monotonic() - started)))
        self.recycler.join(timeout=5.0)
        self.kafka.close()
        log.info("agent stopped")
        return 0

    def round(self) -> dict[str, tuple[str, str, dict[str, Any]]]:
        """Probe everything once and record it; a failing probe is DOWN, never a crash."""
        results = {name: self._safely(name, probe) for name, probe in self.probes().items()}
        results.update(self._safely_many("process", self.process_states))
        publish_metrics(results)
        try:
            status_db.record(results, datetime.now(timezone.utc), self.settings.status_interval,
                                __version__)
        except Exception as exc:  # status.db trouble must not stop the probing
            log.warning("could not record status", extra={"error": str(exc)})
        return results

    def probes(self) -> dict[str, Callable[[], probes.Result]]:
        settings = self.settings
        return {
            "api": lambda: probes.api(settings),
            "kafka": self.kafka,
            "database": lambda: probes.database(settings, self.consumer_state()),
            "spool": lambda: probes.spool(settings),
            "otel": lambda: probes.otel(settings),
            "prometheus": lambda: probes.prometheus(settings),
        }

    @staticmethod
    def _safely(name: str, probe: Callable[[], probes.Result]) -> probes.Result:
        try:
            return probe()
        except Exception as exc:  # a probe bug or surprise: report it as this component's state
            log.warning("probe failed", extra={"component": name, "error": repr(exc)})
            return "DOWN", f"probe failed: {exc}", {}

    def _safely_many(self, prefix: str, probe) -> dict[str, probes.Result]:
        try:
            return probe()
        except Exception as exc:
            return {prefix: ("DOWN", f"probe failed: {exc}", {})}

    def consumer_state(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.settings.data_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None

    def process_states(self) -> dict[str, probes.Result]:
        try:
            infos = supervise.processes(self.settings)
        except supervise.NotRunning:
            return {"processes": ("DISABLED", "not running under supervisord", {})}
        results = {}
        for info in infos:
            name = info["name"]
            if name == "broker" and not self.settings.embedded_broker:
                results["process.broker"] = ("DISABLED", "external or no Kafka", {})
                continue
            self._count_restart(name, info["pid"])
            uptime = info["now"] - info["start"] if info["statename"] == "RUNNING" else 0
            data = {"pid": info["pid"], "uptime_s": uptime, "restarts": self.restarts.get(name, 0),
                    "statename": info["statename"]}
            if name == "broker" and info["pid"]:
                data["rss_mb"] = rss_mb(info["pid"])
                data["recycles"] = self.recycler.recycles
                data["last_recycle_reason"] = self.recycler.last_reason
            word = supervise.STATE_WORDS.get(info["statename"], "DOWN")
            detail = f"{info['statename'].lower()}: {info['description']}"
            if name == "consumer" and word == "UP" and self.settings.kafka_enabled:
                word, detail = self._consumer_assignment(data, detail)
            results[f"process.{name}"] = (word, detail, data)
        return results

    def _consumer_assignment(self, data: dict[str, Any], detail: str) -> tuple[str, str]:
        """Running is not consuming: until the group gave it partitions, it is DEGRADED."""
        state = self.consumer_state() or {}
        age = state_age(state)
        if age is None or age > max(3 * self.settings.status_interval, 5.0):
            return "DEGRADED", f"{detail}; no report from the consumer for a while (starting?)"
        assigned = state.get("assigned_partitions") or []
        data["assigned_partitions"] = assigned
        data["lag"] = state.get("lag")
        if state.get("stalled"):
            return "DOWN", (f"{detail}; stalled: lag {state.get('lag')}, no progress for "
                            f"{state.get('no_progress_s', 0):.0f} s")
        if not assigned:
            return "DEGRADED", f"{detail}; no partitions assigned yet (joining the group)"
        return "UP", f"{detail}; {len(assigned)} partitions assigned"

    def _count_restart(self, name: str, pid: int) -> None:
        previous = self._pids.get(name)
        if pid and previous and pid != previous:
            self.restarts[name] = self.restarts.get(name, 0) + 1
            metrics.mark_dead(previous)  # its live gauges go; its counters still count
        if pid:
            self._pids[name] = pid

def publish_metrics(results: dict[str, probes.Result]) -> None:
    for name, (state, _, data) in results.items():
        value = metrics.component_value(state)
        if value is not None:  # DISABLED components get no series
            M.component_up.labels(component=name).set(value)
        if name == "kafka":
            for partition, lag in data.get("lag", {}).items():
                M.consumer_lag.labels(partition=partition).set(lag)
        if name == "process.broker" and "rss_mb" in data:
            M.broker_rss.set(data["rss_mb"] * 1024 * 1024)


def state_age(state: dict[str, Any]) -> float | None:
    try:
        return (datetime.now(timezone.utc) - status_db.parse_iso(state["at"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        return None


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def main(settings: Settings) -> int:
    logs.configure(settings.log_level)
    metrics.init(settings.metrics_dir, "agent", __version__)
    agent = Agent(settings)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, agent.request_stop)
    return agent.run()

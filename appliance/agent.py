"""The status agent: every STATUS_INTERVAL, probe each component and record its health.

It also keeps the embedded broker's memory bounded. Tansu keeps every message in memory and
neither applies retention nor supports DeleteRecords (FACTS.md), so when its RSS passes
EMBEDDED_BROKER_MAX_MB the agent recycles it, safely:
  1. create DATA_DIR/kafka-paused: the API's producer sees it within one probe (2 s) and spools;
  2. wait until the API's librdkafka queue is empty and the consumer's lag is 0, i.e. every
     event the broker acknowledged is in the database;
  3. restart the broker through supervisord, wait for its port, remove the pause file.
The API then recreates the topic and replays its spool; nothing crosses the restart in memory.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import time
from datetime import datetime, timezone
from typing import Any, Callable

from . import logs, metrics, probes, status_store, supervise
from .metrics import M
from .config import Settings
from .consumer import STATE_FILE
from .version import __version__

log = logging.getLogger("appliance.agent")
PAUSE_WAIT = 30.0  # seconds to reach "queue empty, lag 0" before giving up a recycle


class Agent:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop_requested = False
        self.kafka = probes.KafkaProbe(settings)
        self.restarts: dict[str, int] = {}
        self._pids: dict[str, int] = {}
        self.broker_recycles = 0

    def request_stop(self, *_args) -> None:
        self.stop_requested = True

    def run(self) -> int:
        # A pause file left by an agent killed mid-recycle would keep the producer spooling.
        self.settings.kafka_pause_file.unlink(missing_ok=True)
        if self.settings.embedded_broker:
            self._ensure_broker_running()
        status_store.connect(self.settings.status_db_path)
        log.info("agent started", extra={"interval_s": self.settings.status_interval,
                                         "status_db": str(self.settings.status_db_path)})
        while not self.stop_requested:
            started = time.monotonic()
            results = self.round()
            self.guard_broker_memory(results)
            self._sleep(self.settings.status_interval - (time.monotonic() - started))
        self.kafka.close()
        log.info("agent stopped")
        return 0

    def round(self) -> dict[str, tuple[str, str, dict[str, Any]]]:
        """Probe everything once and record it; a failing probe is DOWN, never a crash."""
        results = {name: self._safely(name, probe) for name, probe in self.probes().items()}
        results.update(self._safely_many("process", self.process_states))
        publish_metrics(results)
        try:
            status_store.record(results, datetime.now(timezone.utc), self.settings.status_interval,
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

    # --- embedded broker memory ----------------------------------------------------------

    def guard_broker_memory(self, results: dict[str, probes.Result]) -> None:
        broker = results.get("process.broker")
        if not self.settings.embedded_broker or not broker or broker[0] != "UP":
            return
        rss = broker[2].get("rss_mb") or 0
        if rss <= self.settings.embedded_broker_max_mb:
            return
        log.warning("embedded broker over its memory limit: recycling it",
                    extra={"rss_mb": rss, "limit_mb": self.settings.embedded_broker_max_mb})
        pause = self.settings.kafka_pause_file
        pause.touch()
        try:
            if not self._drained():
                log.warning("broker recycle postponed: events not drained in time")
                return
            self._restart_broker()
            self.broker_recycles += 1
            log.warning("embedded broker recycled", extra={"recycles": self.broker_recycles,
                                                           "rss_before_mb": rss})
        except Exception as exc:  # XML-RPC fault, Kafka error: never leave the broker stopped
            log.warning("broker recycle failed", extra={"error": repr(exc)})
            self._ensure_broker_running()
        finally:
            pause.unlink(missing_ok=True)

    def _restart_broker(self) -> None:
        control = supervise.client(self.settings).supervisor
        control.stopProcess("broker", True)
        control.startProcess("broker", True)
        self._wait_for_broker_port()

    def _ensure_broker_running(self) -> None:
        # supervisord does not restart a program stopped through its API: we must.
        try:
            control = supervise.client(self.settings).supervisor
            if control.getProcessInfo("broker")["statename"] in ("STOPPED", "EXITED", "FATAL"):
                control.startProcess("broker", True)
        except Exception as exc:
            log.warning("could not restart the embedded broker", extra={"error": repr(exc)})

    def _drained(self) -> bool:
        """True once the API spools (its probe saw the pause file), its Kafka queue is empty and
        the lag is 0, twice a second apart: a request that read "UP" just before the pause
        has produced by the second look, and its event must be consumed too."""
        deadline = time.monotonic() + PAUSE_WAIT
        confirmed = 0
        while time.monotonic() < deadline and not self.stop_requested:
            quiet = self._api_paused_and_empty() and self.kafka()[2].get("lag_total", 1) == 0
            confirmed = confirmed + 1 if quiet else 0
            if confirmed == 2:
                return True
            time.sleep(1.0 if quiet else 0.5)
        return False

    def _api_paused_and_empty(self) -> bool:
        try:
            _, body = probes.http_get(f"http://127.0.0.1:{self.settings.port}/kafka/status")
            status = json.loads(body)
        except (OSError, ValueError):
            return False
        return status.get("paused") is True and status.get("in_queue") == 0

    def _wait_for_broker_port(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.settings.embedded_broker_port), 0.5):
                    return
            except OSError:
                time.sleep(0.2)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + max(0.0, seconds)
        while not self.stop_requested and time.monotonic() < deadline:
            time.sleep(0.05)


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
        return (datetime.now(timezone.utc) - status_store.parse_iso(state["at"])).total_seconds()
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

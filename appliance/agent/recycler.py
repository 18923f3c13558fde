"""Restarts the embedded broker before it gets slow or big, without losing an event.

Tansu (the embedded broker) keeps every message in memory, applies no retention, and lists
every record batch of a partition on each fetch (docs/embedded-broker.md). So the agent restarts
it when its RSS passes EMBEDDED_BROKER_MAX_MB, when the API has written more than
EMBEDDED_BROKER_MAX_BATCHES record batches to it, or when the consumer stalled with events
waiting. Nothing is lost by a restart: the API keeps every event in its spool until the consumer
group has committed past it, and sends again whatever the broker forgot.

A recycle: create DATA_DIR/kafka-paused (the API's relay stops sending within a turn) -> wait
up to PAUSE_WAIT for everything sent to be confirmed (fewer events to send twice) -> restart
the broker through supervisord -> remove the pause file. It runs in its own thread, so the
agent keeps recording probe rounds meanwhile, and it never waits longer than PAUSE_WAIT +
PORT_WAIT.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

from appliance.agent import probes
from appliance.core import sensors, supervisor
from appliance.core.config import Settings
from appliance.schema.consumer_report import ConsumerReport
from appliance.schema.pause import PauseFlag
from appliance.schema.producer_status import ProducerStatus

log = logging.getLogger("appliance.agent")
PAUSE_WAIT = 10.0  # seconds for the API to pause and everything sent to be confirmed
PORT_WAIT = 15.0  # seconds for the restarted broker to listen
MIN_INTERVAL = {"memory": 10.0, "batches": 10.0, "stalled": 60.0}  # seconds since the last one


class BrokerRecycler:
    def __init__(self, settings: Settings, stop: threading.Event) -> None:
        self.settings = settings
        self.stop = stop
        self.recycles = 0
        self.last_reason: str | None = None
        self._last_at = 0.0
        self._thread: threading.Thread | None = None
        sensors.on_broker_recycler(MIN_INTERVAL)

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def consider(self, broker: probes.Result | None, consumer: ConsumerReport | None) -> None:
        """Called after each probe round: start a recycle when one is due and none runs."""
        if not self.settings.embedded_broker or self.busy or not broker or broker[0] != "UP":
            return
        reason = self.reason(broker[2].get("rss_mb") or 0, probes.api_kafka_status(self.settings),
                             consumer)
        if reason is None or time.monotonic() - self._last_at < MIN_INTERVAL[reason[0]]:
            return
        self._thread = threading.Thread(target=self.recycle, args=reason, name="broker-recycler",
                                        daemon=True)
        self._thread.start()

    def reason(self, rss_mb: float, api: ProducerStatus | None,
               consumer: ConsumerReport | None) -> tuple[str, str] | None:
        settings = self.settings
        if rss_mb > settings.embedded_broker_max_mb:
            return "memory", (f"RSS {rss_mb:.0f} MB > "
                              f"EMBEDDED_BROKER_MAX_MB={settings.embedded_broker_max_mb:g}")
        batches = api.broker_batches if api else 0
        if batches > settings.embedded_broker_max_batches:
            return "batches", (f"{batches} record batches > EMBEDDED_BROKER_MAX_BATCHES="
                               f"{settings.embedded_broker_max_batches}")
        if consumer is not None and consumer.stalled:
            return "stalled", f"consumer stalled with lag {consumer.lag}"
        return None

    def recycle(self, reason: str, detail: str) -> None:
        log.warning("recycling the embedded broker", extra={"reason": reason, "detail": detail})
        self._last_at = time.monotonic()
        pause = PauseFlag(self.settings.layout.pause_flag)
        pause.set()
        try:
            drained = self._wait_drained()
            if self.stop.is_set():
                return  # the agent is stopping (the appliance, probably): leave the broker be
            self._restart_broker()
            self.recycles += 1
            sensors.on_broker_recycled(reason)
            log.warning("embedded broker recycled", extra={
                "reason": reason, "recycles": self.recycles, "drained": drained,
                "note": None if drained else "unconfirmed events stay in the API's spool and "
                                              "are sent again"})
        except Exception as exc:  # XML-RPC fault: never leave the broker stopped
            log.warning("broker recycle failed", extra={"error": repr(exc)})
            ensure_broker_running(self.settings)
        finally:
            pause.clear()
            self._last_at = time.monotonic()
            self.last_reason = reason

    def _wait_drained(self) -> bool:
        """True once the API has stopped sending and Kafka holds nothing it sent unconfirmed:
        everything the broker holds is in the database. (Only the API's relay sends, and it
        sends nothing once it reports "paused".) False after PAUSE_WAIT: the restart goes
        ahead anyway."""
        deadline = time.monotonic() + PAUSE_WAIT
        while time.monotonic() < deadline and not self.stop.is_set():
            status = probes.api_kafka_status(self.settings)
            if (status is not None and status.paused and status.in_queue == 0
                    and status.in_flight == 0 and status.unconfirmed == 0):
                return True
            self.stop.wait(0.2)
        return False

    def _restart_broker(self) -> None:
        """SIGKILL, and supervisord's autorestart starts it again: it keeps nothing on disk, and
        a TERM makes it wait 5 s for its clients to disconnect (measured), for nothing."""
        control = supervisor.client(self.settings).supervisor
        old_pid = control.getProcessInfo("broker")["pid"]
        control.signalProcess("broker", "KILL")
        deadline = time.monotonic() + PORT_WAIT
        while time.monotonic() < deadline:
            info = control.getProcessInfo("broker")
            if info["statename"] in ("STARTING", "RUNNING") and info["pid"] not in (0, old_pid):
                break
            time.sleep(0.1)
        else:
            ensure_broker_running(self.settings)
        wait_for_port(self.settings.embedded_broker_port, PORT_WAIT)


def ensure_broker_running(settings: Settings) -> None:
    # supervisord does not restart a program stopped through its API: we must.
    try:
        control = supervisor.client(settings).supervisor
        if control.getProcessInfo("broker")["statename"] in ("STOPPED", "EXITED", "FATAL"):
            control.startProcess("broker", True)
    except Exception as exc:
        log.warning("could not restart the embedded broker", extra={"error": repr(exc)})


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.2)

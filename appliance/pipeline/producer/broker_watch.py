"""Is the broker reachable, is it paused for maintenance, which incarnation of our topic is it?

A keeper thread probes every PROBE_INTERVAL (kafka_status follows within ~2-4 s), creates the
topic when it is missing, reads its topic id, and replaces a producer that hit a fatal error.

The topic id tells incarnations apart: the embedded broker keeps everything in memory, so after
it restarts the topic is created anew with a new id and offsets start from 0 again. Offsets of
one incarnation mean nothing in another; the relay resets what it waits for when the id changes.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient

from appliance.core import sensors
from appliance.core.config import Settings
from appliance.core.kafka import base_config, ensure_topic, topic_id
from appliance.core.timefmt import utc_now_iso
from appliance.schema.pause import PauseFlag

log = logging.getLogger("appliance.producer")
PROBE_INTERVAL = 2.0  # seconds between broker probes
PROBE_TIMEOUT = 2.0  # seconds one metadata request may take


class ProducerHandle:
    """The producer in use; a new one takes over when the old one is dead."""

    def __init__(self, make: Callable[[], Producer]) -> None:
        self._make = make
        self.producer = make()

    def replace(self) -> None:
        """Purge the old producer (its messages come back as failed delivery reports, which put
        them back in line for sending) and carry on with a new one."""
        dead, self.producer = self.producer, self._make()
        dead.purge(in_queue=True, in_flight=True, blocking=False)
        deadline = time.monotonic() + 5
        while len(dead) and time.monotonic() < deadline:
            dead.poll(0.1)


class BrokerWatch:
    def __init__(self, settings: Settings, handle: ProducerHandle,
                 admin: AdminClient | None = None) -> None:
        self.settings = settings
        self.handle = handle
        self.kafka_up = False
        self.paused = False  # True once a probe has seen the agent's pause file
        self.partitions: int | None = None
        self.topic_id: str | None = None
        self.last_error: str | None = None
        self.last_error_at: str | None = None
        self.state_since = utc_now_iso()
        self.pause = PauseFlag(settings.layout.pause_flag)
        self._admin = admin or AdminClient({**base_config(settings), "log_level": 0})
        self._fatal = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kafka-keeper", daemon=True)

    def start(self) -> None:
        """Probe once (so the first request already sees the real state), then keep probing."""
        self.probe()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(PROBE_TIMEOUT + 2)

    @property
    def can_send(self) -> bool:
        return self.kafka_up and not self.paused

    # --- what the producer's callbacks report ----------------------------------------------

    def on_error(self, err: KafkaError) -> None:
        self.note_failure(err)
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._set_up(False)

    def note_failure(self, err: KafkaError) -> None:
        self.note_error(err.str())
        if err.fatal() or err.code() == KafkaError._FATAL:
            self.mark_fatal()

    def mark_fatal(self) -> None:
        self._fatal.set()
        self._wake.set()  # replace the dead producer now, not at the next probe

    def note_error(self, text: str) -> None:
        self.last_error, self.last_error_at = text, utc_now_iso()

    def check_pause(self) -> None:
        """Called by the relay before each turn's sending (a stat() a turn): the agent's pause
        file stops sending at once, and its removal wakes the keeper to probe right away."""
        paused = self.pause.is_set()
        if paused == self.paused:
            return
        self.paused = paused
        if paused:
            self.note_error("paused for embedded broker maintenance")
            self._set_up(False)
        else:
            self._wake.set()

    # --- the keeper thread ---------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(PROBE_INTERVAL)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if self._fatal.is_set():
                    self._fatal.clear()
                    self.handle.replace()
                    log.warning("replaced producer", extra={"last_error": self.last_error})
                self.probe()
            except Exception:  # this thread must outlive any surprise: it is what recovers
                log.exception("kafka keeper round failed; retrying")

    def probe(self) -> None:
        self.paused = self.pause.is_set()
        if self.paused:
            # The agent is about to recycle the embedded broker: hold events in the spool until
            # it is back, so nothing new sits in a broker that is about to forget everything.
            self.note_error("paused for embedded broker maintenance")
            self._set_up(False)
            return
        try:
            self.partitions = ensure_topic(self.handle.producer, self.settings, PROBE_TIMEOUT,
                                           self._admin)
            self._note_topic_id(self.read_topic_id())
        except Exception as exc:  # KafkaException, or TimeoutError from a slow topic creation
            self.note_error(str(exc.args[0]) if exc.args else repr(exc))
            self._set_up(False)
            return
        self._set_up(True)

    def read_topic_id(self) -> str | None:
        return topic_id(self._admin, self.settings.kafka_topic_events, PROBE_TIMEOUT)

    def _note_topic_id(self, current: str | None) -> None:
        if current and self.topic_id and current != self.topic_id:
            log.warning("the events topic was recreated (broker restarted?)",
                        extra={"topic": self.settings.kafka_topic_events})
        self.topic_id = current or self.topic_id

    def _set_up(self, up: bool) -> None:
        sensors.on_kafka_state(up)
        if up != self.kafka_up:
            self.kafka_up = up
            self.state_since = utc_now_iso()
            log.log(logging.INFO if up else logging.WARNING, "kafka is %s", "UP" if up else "DOWN",
                    extra={"brokers": self.settings.kafka_bootstrap, "last_error": self.last_error})

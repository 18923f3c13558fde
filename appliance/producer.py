"""The Kafka side of the API process: produce events, never block a request, lose nothing.

- ``emit()`` produces asynchronously; while the broker is known to be down it writes straight
  to the durable spool instead, so nothing waits in librdkafka's memory where a crash loses it.
- A poller thread serves delivery reports; failed ones (timeout, error, purge) are spooled.
- A keeper thread probes the broker every PROBE_INTERVAL (kafka_up), creates the topic, replays
  the spool in order, and replaces a producer that hit a fatal error (purging it into the spool).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from . import events
from .config import Settings
from .kafkautil import base_config, client_logger, ensure_topic
from .metrics import M
from .spool import Headers, Spool, SpoolWriter

log = logging.getLogger("appliance.producer")
PROBE_INTERVAL = 2.0  # seconds between broker probes: kafka_status follows within ~2-4 s
PROBE_TIMEOUT = 2.0  # seconds one metadata request may take
REPLAY_BATCH = 500  # spooled messages produced per replay round
REPLAY_FLUSH_TIMEOUT = 16.0  # seconds a replay round waits: > message.timeout.ms (15 s), so
# every report of the round arrives inside it


def value_type(value: bytes | None) -> str:
    """The event_type metric label of an encoded event, without parsing the JSON: delivery
    reports carry neither our object nor the message headers, only the value."""
    start = (value or b"").find(b'"event_type":"')
    if start < 0:
        return "unknown"
    start += len(b'"event_type":"')
    return events.type_label(value[start:value.find(b'"', start)].decode(errors="replace"))


class Stats:
    """Counters shared by request threads and the poller; a lock keeps them exact."""

    FIELDS = ("queued", "delivered", "failed", "spooled", "lost")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values = dict.fromkeys(self.FIELDS, 0)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.values[name] += amount


class KafkaEventSink:
    enabled = True
    def __init__(self, settings: Settings, spool: Spool) -> None:
        self.settings = settings
        self.topic = settings.kafka_topic_events
        self.spool = spool
        self.stats = Stats()
        self.kafka_up = False
        self.paused = False  # True once a probe has seen the agent's pause file
        self.partitions: int | None = None
        self.last_error: str | None = None
        self.last_error_at: str | None = None
        self.state_since = events.utc_now_iso()
        self._fatal = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._failed: list[tuple[bytes | None, bytes, Headers | None]] = []
        self._failed_lock = threading.Lock()
        self._sampled_at = 0.0
        self._replay_done: dict[bytes, bool] = {}
        self._replay_reported = 0
        self._client_logger = client_logger("librdkafka")
        self._producer = self._new_producer()
        self.writer = SpoolWriter(spool, on_lost=self._lost_after_spooling)
        self._threads = [threading.Thread(target=self._poll_loop, name="kafka-poller", daemon=True),
                         threading.Thread(target=self._keep_loop, name="kafka-keeper", daemon=True)]

    # --- configuration -------------------------------------------------------------------

    def producer_config(self) -> dict[str, Any]:
        config = {
            "client.id": f"simple-time-service-api@{socket.gethostname()}",
            # acks=all without idempotence: FACTS.md measured that this recovers by itself
            # after a broker restart, while idempotence turns a restart into a fatal error.
            "acks": "all",
            "enable.idempotence": False,
            "linger.ms": 5,  # small batches: latency stays in single-digit ms
            "message.timeout.ms": 15000,  # then the report fails and the event is spooled
            "queue.buffering.max.messages": 100_000,
            **base_config(self.settings),
            "on_delivery": self._on_delivery,
            "error_cb": self._on_error,
            "logger": self._client_logger,
        }
        return config

    def _new_producer(self) -> Producer:
        return Producer(self.producer_config())

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Probe once (so the first request already sees the real state), then run threads."""
        self._probe()
        for thread in self._threads:
            thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Flush within ``timeout``; whatever is still queued goes to the spool."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:  # the keeper stops within a probe timeout
            if thread.is_alive():
                thread.join(timeout=PROBE_TIMEOUT + 2)
        producer = self._producer
        remaining = producer.flush(timeout) if self.kafka_up else len(producer)
        if remaining:
            producer.purge(in_queue=True, in_flight=True, blocking=True)
            deadline = time.monotonic() + 5
            while len(producer) and time.monotonic() < deadline:
                producer.poll(0.1)  # purged messages come back as failed reports -> spool
        self._spool_failed()
        self.writer.close()
        log.info("producer closed", extra={"spooled_at_close": remaining,
                                           "spool_depth": self.spool.depth})
        self.spool.close()

    # --- the request path ----------------------------------------------------------------

    def emit(self, event: dict[str, Any], headers: Headers | None = None,
             durable: bool = False) -> str:
        """Queue for Kafka, or spool. ``durable``: return only once a spooled event is on disk
        (POST /kafka/publish promises that); request events are spooled in the background."""
        value = events.encode(event)
        key = event["request_id"].encode()
        kind = events.type_label(event["event_type"])
        if self.kafka_up:
            try:
                self._producer.produce(self.topic, value, key, headers=headers)
                self.stats.add("queued")
                M.produced.labels(kind, "queued").inc()
                return "queued"
            except BufferError:
                self._note_error("local queue full")
            except KafkaException as exc:  # a fatal producer refuses; the keeper replaces it
                self._note_failure(exc.args[0])
        if durable:
            return self._spool_now([(key, value, headers)])
        if not self.writer.put([(key, value, headers)]):
            self._lost([(key, value, headers)])
            return "lost"
        self.stats.add("spooled")
        self._count([(key, value, headers)], "spooled")
        return "spooled"

    def _lost(self, messages: list) -> None:
        self.stats.add("lost", len(messages))
        self._count(messages, "lost")

    def _spool_now(self, messages: list[tuple[bytes | None, bytes, Headers | None]]) -> str:
        try:
            self.spool.append(messages)
        except Exception:  # disk full, spool removed: count it, never raise into a request
            self._lost(messages)
            log.exception("could not spool events; they are lost", extra={"count": len(messages)})
            return "lost"
        self.stats.add("spooled", len(messages))
        self._count(messages, "spooled")
        M.spool_depth.set(self.spool.depth)
        return "spooled"

    def _lost_after_spooling(self, messages: list) -> None:
        self.stats.add("spooled", -len(messages))
        self._lost(messages)

    @staticmethod
    def _count(messages, result: str) -> None:
        for _, value, _ in messages:
            M.produced.labels(value_type(value), result).inc()

    # --- callbacks (run on whichever thread polls) ----------------------------------------

    def _on_replay_delivery(self, err: KafkaError | None, msg) -> None:
        """A replayed message is still in the spool: a failure leaves it there (never spooled
        twice), a success lets the replay remove it, even a late one (it stays in the spool and
        is delivered again; the consumer ignores the duplicate event_id)."""
        if err is None:
            self.stats.add("delivered")
            M.produced.labels(value_type(msg.value()), "delivered").inc()
        if msg.value() in self._replay_done:
            self._replay_done[msg.value()] = err is None
            self._replay_reported += 1

    def _on_delivery(self, err: KafkaError | None, msg) -> None:
        if err is None:
            self.stats.add("delivered")
            M.produced.labels(value_type(msg.value()), "delivered").inc()
            return
        self.stats.add("failed")
        M.produced.labels(value_type(msg.value()), "failed").inc()
        self._note_error(err.str())
        with self._failed_lock:
            self._failed.append((msg.key(), msg.value(), msg.headers()))

    def _on_error(self, err: KafkaError) -> None:
        self._note_failure(err)
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._set_up(False)

    def _note_failure(self, err: KafkaError) -> None:
        self._note_error(err.str())
        if err.fatal() or err.code() == KafkaError._FATAL:
            self._fatal.set()
            self._wake.set()  # replace the dead producer now, not at the next probe

    # --- background threads --------------------------------------------------------------

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._producer.poll(0.1)
            except KafkaException as exc:  # poll() raises a fatal error: hand it to the keeper
                self._note_failure(exc.args[0])
                self._stop.wait(0.1)
            self._spool_failed()
            self._sample_gauges()

    def _sample_gauges(self) -> None:
        now = time.monotonic()
        if now - self._sampled_at >= 1.0:
            self._sampled_at = now
            M.queue_length.set(len(self._producer))
            M.spool_depth.set(self.spool.depth)

    def _spool_failed(self) -> None:
        with self._failed_lock:
            failed, self._failed = self._failed, []
        if failed:
            self._spool_now(failed)

    def _keep_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(PROBE_INTERVAL)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._keep()
            except Exception:  # this thread must outlive any surprise: it is what recovers
                log.exception("kafka keeper round failed; retrying")

    def _keep(self) -> None:
        if self._fatal.is_set():
            self._replace_producer()
        self._probe()
        if self.kafka_up and self.spool.depth:
            self._replay()

    def _probe(self) -> None:
        self.paused = self.settings.kafka_pause_file.exists()
        if self.paused:
            # The agent is about to recycle the embedded broker: spool until it is back, so
            # nothing acknowledged sits unconsumed in a broker that forgets everything.
            self._note_error("paused for embedded broker maintenance")
            self._set_up(False)
            return
        try:
            self.partitions = ensure_topic(self._producer, self.settings, PROBE_TIMEOUT)
        except Exception as exc:  # KafkaException, or TimeoutError from a slow topic creation
            self._note_error(str(exc.args[0]) if exc.args else repr(exc))
            self._set_up(False)
            return
        self._set_up(True)

    def _set_up(self, up: bool) -> None:
        M.kafka_up.set(1 if up else 0)
        if up != self.kafka_up:
            self.kafka_up = up
            self.state_since = events.utc_now_iso()
            log.log(logging.INFO if up else logging.WARNING, "kafka is %s", "UP" if up else "DOWN",
                        extra={"brokers": self.settings.kafka_bootstrap, "last_error": self.last_error})

    def _note_error(self, text: str) -> None:
        self.last_error, self.last_error_at = text, events.utc_now_iso()

    def _replace_producer(self) -> None:
        """A fatal error kills a producer (or it is wedged); keep what it held, carry on anew."""
        dead, self._producer = self._producer, self._new_producer()
        self._fatal.clear()
        dead.purge(in_queue=True, in_flight=True, blocking=False)
        deadline = time.monotonic() + 5
        while len(dead) and time.monotonic() < deadline:
            dead.poll(0.1)  # purge reports arrive as failures and are spooled
        self._spool_failed()
        log.warning("replaced producer",
                    extra={"last_error": self.last_error, "spool_depth": self.spool.depth})

    def _replay(self) -> None:
        """Send spooled messages oldest first; remove each only after Kafka acknowledged it."""
        while self.kafka_up and not self._stop.is_set():
            if self.settings.kafka_pause_file.exists():
                return  # the agent recycles the broker: let the next probe turn us DOWN
            batch = self.spool.peek(REPLAY_BATCH)
            if not batch:
                return
            self._replay_done = {m.value: False for m in batch}
            self._replay_reported = 0
            try:
                for message in batch:
                    self._producer.produce(self.topic, message.value, message.key,
                                           headers=message.headers or None,
                                           on_delivery=self._on_replay_delivery)
                self._await_replay_reports(len(batch))
            except BufferError:
                self._note_error("replay: local queue full")
            except KafkaException as exc:
                self._note_failure(exc.args[0])
            done = [m.id for m in batch if self._replay_done.get(m.value)]
            self.spool.remove(done)
            if not done and self.kafka_up:
                # The broker answers metadata but nothing was delivered: a wedged producer (seen
                # with idempotence after a broker restart, without any fatal error). Replace it.
                self._note_error("producer delivered nothing while the broker answers")
                self._fatal.set()
                self._wake.set()
            if len(done) < len(batch):
                return  # broker trouble again: keep the rest in place, in order
            log.info("replayed spooled events", extra={"count": len(done),
                                                       "spool_depth": self.spool.depth})

    def _await_replay_reports(self, count: int) -> None:
        """Serve delivery reports until the round's are all in; a shutdown cuts it short (the
        unacknowledged rows simply stay in the spool)."""
        deadline = time.monotonic() + REPLAY_FLUSH_TIMEOUT
        while (self._replay_reported < count and not self._stop.is_set()
               and time.monotonic() < deadline):
            self._producer.poll(0.1)

    # --- reads ---------------------------------------------------------------------------

    def flush(self, timeout: float) -> int:
        return self._producer.flush(timeout)

    def status(self) -> dict[str, Any]:
        return {
            "brokers": self.settings.kafka_bootstrap,
            "topic": self.topic,
            "partitions": self.partitions,
            "connected": self.kafka_up,
            "state": "UP" if self.kafka_up else "DOWN",
            "paused": self.paused,
            "state_since": self.state_since,
            "in_queue": len(self._producer),
            **self.stats.values,
            "spool_depth": self.spool.depth + self.writer.pending,
            "spool_bytes": self.spool.bytes,
            "dropped": self.spool.dropped,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
        }

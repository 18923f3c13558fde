"""The Kafka side of the API process: every event goes to the spool first, never blocks a
request on Kafka, and leaves the spool only once it is safe.

- ``emit()`` hands the encoded event to the spool writer (``durable``: and waits until it is on
  disk). Nothing is produced from a request thread.
- The relay thread sends from the spool to Kafka and removes what the release rule allows: on
  the broker's acknowledgement for an external cluster (acks=all), on the consumer group's
  commit for the embedded broker (docs/embedded-broker.md: it keeps messages in memory only).
- The keeper thread (BrokerWatch) probes the broker, creates the topic, follows its incarnation
  and replaces a producer that hit a fatal error.
"""

from __future__ import annotations

import collections
import logging
import socket
import threading
import time
from typing import Any

from confluent_kafka import Producer

from appliance.core import sensors
from appliance.core.config import Settings
from appliance.core.kafka import base_config, client_logger
from appliance.pipeline.producer.broker_watch import BrokerWatch, ProducerHandle
from appliance.pipeline.producer.delivery import DeliveryTracker
from appliance.pipeline.producer.relay import Relay
from appliance.pipeline.producer.reports import value_type
from appliance.pipeline.producer.spool import (
    ACCEPTED,
    REFUSED,
    WRITTEN,
    Headers,
    Message,
    Spool,
    SpoolWriter,
)
from appliance.schema import events
from appliance.schema.producer_status import ProducerStatus

log = logging.getLogger("appliance.producer")
STATS_INTERVAL_MS = 5000  # librdkafka statistics: how the embedded broker's batches are counted


class Stats:
    """Counters shared by request threads and the relay; a lock keeps them exact.

    Events handed over are also counted here by type, and reach the Prometheus counter once a
    relay turn (``take_by_type``): a multiprocess metric write per event, two per request, was
    ~5 % of a request's CPU in the API (bench/request_cost.py)."""

    FIELDS = ("queued", "delivered", "failed", "spooled", "lost")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values = dict.fromkeys(self.FIELDS, 0)
        self._by_type: collections.Counter = collections.Counter()  # (event type, outcome)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.values[name] += amount

    def add_events(self, outcome: str, kinds: list[str]) -> None:
        with self._lock:
            self.values[outcome] += len(kinds)
            for kind in kinds:
                self._by_type[kind, outcome] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.values)

    def take_by_type(self) -> collections.Counter:
        with self._lock:
            counts, self._by_type = self._by_type, collections.Counter()
        return counts


def producer_config(settings: Settings) -> dict[str, Any]:
    config = {
        "client.id": f"simple-time-service-api@{socket.gethostname()}",
        # acks=all without idempotence: with idempotence a broker restart turned into a fatal
        # UNKNOWN_PRODUCER_ID ~1 s later, while this recovered by itself within ~1 s.
        "acks": "all",
        "enable.idempotence": False,
        # Fewer, larger record batches: the embedded broker's fetch cost grows with the number
        # of batches in a partition (docs/embedded-broker.md); 50 ms caps it at 20 a second.
        # Measured with the whole appliance under wrk (bench/whole_appliance.py --up-variant):
        # 100 ms made event -> row p99 0.3-1.1 s under load, 50 ms 0.24-0.31 s, 20 ms and 5 ms
        # no better, at more broker CPU (3.1 % at 100 ms, 3.7 % at 50, 4.4 % at 20, 6.5 % at 5).
        "linger.ms": 50,
        # JSON events in 50 ms batches: lz4 makes them a quarter of the size, in the embedded
        # broker's memory too (measured on Tansu: 515 -> 125 bytes per event; the producer's
        # CPU 2.0 -> 2.3 us a message, in librdkafka's threads), so it is recycled a quarter as
        # often under load. KAFKA_COMPRESSION_TYPE overrides it.
        "compression.type": "lz4",
        "message.timeout.ms": 15000,  # then the report fails and the row is sent again
        # The keeper creates the topic with its partition count; a producer's metadata request
        # would otherwise have the broker create it with its own default (4 on Tansu).
        "allow.auto.create.topics": False,
        "queue.buffering.max.messages": 100_000,
        **base_config(settings),
    }
    if settings.embedded_broker:
        config["statistics.interval.ms"] = STATS_INTERVAL_MS
    return config


class KafkaEventSink:
    enabled = True

    def __init__(self, settings: Settings, spool: Spool, make_producer=None, admin=None,
                 offsets=None) -> None:
        """``make_producer``, ``admin`` and ``offsets`` stand in for the Kafka clients in tests."""
        self.settings = settings
        self.spool = spool
        self.stats = Stats()
        self.tracker = DeliveryTracker(until_committed=settings.embedded_broker)
        self.handle = ProducerHandle(make_producer or self._new_producer)
        self.watch = BrokerWatch(settings, self.handle, admin)
        self.relay = Relay(settings, spool, self.handle, self.watch, self.tracker, self.stats,
                           offsets)
        # With EVENT_DURABILITY=sync requests wait for the commit: no lingering then.
        self.writer = SpoolWriter(spool, on_lost=self._lost,
                                  linger=0.0 if settings.event_durability == "sync" else 0.02)

    def _new_producer(self) -> Producer:
        config = {**producer_config(self.settings), "error_cb": self._on_error,
                  "logger": client_logger("librdkafka")}
        if "statistics.interval.ms" in config:
            config["stats_cb"] = self._on_stats
        return Producer(config)

    def _on_error(self, err) -> None:
        self.watch.on_error(err)

    def _on_stats(self, text: str) -> None:
        self.relay.on_stats(text)

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self.watch.start()
        if self.relay.confirmer:  # the first probe read the topic's id: that is where we start
            self.relay.confirmer.incarnation = self.watch.topic_id
        self.relay.start()

    def close(self, timeout: float = 5.0) -> None:
        """Commit what is pending, send and flush within ``timeout``; the rest stays spooled."""
        self.watch.stop()
        self.writer.close()
        undelivered = self.relay.close(timeout)
        kept = self.spool.depth
        log.log(logging.WARNING if kept else logging.INFO,
                f"producer closed; {kept} events kept in the spool for the next start" if kept
                else "producer closed", extra={"undelivered": undelivered, "kept_in_spool": kept,
                                              "unconfirmed": self.tracker.unconfirmed})
        self.spool.close()

    # --- the request path ----------------------------------------------------------------

    @property
    def kafka_up(self) -> bool:
        return self.watch.kafka_up

    def emit(self, event: dict[str, Any], headers: Headers | None = None,
             durable: bool = False) -> str:
        """Hand one event to the spool: "queued" (Kafka is up: it leaves at once), "spooled"
        (Kafka is down or paused: it waits on disk) or "lost" (the spool refused it).
        ``durable``: return only once it is on disk."""
        return self.emit_all([(event, headers)], durable)

    def emit_all(self, pairs: list[tuple[dict[str, Any], Headers | None]],
                 durable: bool = False) -> str:
        """Several events (one request's) in one hand-over: with ``durable``, one wait for one
        commit instead of one each. The outcome, as for ``emit``, is the same for all."""
        messages: list[Message] = [(event["request_id"].encode(), events.encode(event), headers)
                                   for event, headers in pairs]
        result = self.writer.put(messages, wait=durable)
        if result == REFUSED:
            self._lost(messages)
        if result not in (ACCEPTED, WRITTEN):
            return "lost"  # a failed commit was counted by the writer's on_lost
        outcome = "queued" if self.watch.can_send else "spooled"
        self.stats.add_events(outcome, [events.type_label(event["event_type"]) for event, _ in pairs])
        return outcome

    def emit_raw(self, messages: list[Message]) -> str:
        """Messages as they are (a dead letter sent again), on disk before this returns."""
        result = self.writer.put(messages, wait=True)
        if result == REFUSED:
            self._lost(messages)
        if result not in (ACCEPTED, WRITTEN):
            return "lost"
        outcome = "queued" if self.watch.can_send else "spooled"
        self.stats.add_events(outcome, ["dead_letter"] * len(messages))
        return outcome

    def _lost(self, messages: list[Message]) -> None:
        self.stats.add("lost", len(messages))
        sensors.on_events_lost(value_type(value) for _, value, _ in messages)

    # --- reads ---------------------------------------------------------------------------

    def flush(self, timeout: float) -> int:
        """Wait up to ``timeout`` until every event handed over so far was delivered; return how
        many were not yet."""
        deadline = time.monotonic() + timeout
        while self.undelivered() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.undelivered()

    def undelivered(self) -> int:
        unsent = max(0, self.spool.last_id - self.relay.cursor + 1)
        return self.writer.pending + unsent + self.tracker.in_flight

    def status(self) -> ProducerStatus:
        watch = self.watch
        depth, spooled_bytes, dropped = self.spool.usage()
        return ProducerStatus(
            brokers=self.settings.kafka_bootstrap, topic=self.settings.kafka_topic_events,
            partitions=watch.partitions, connected=watch.kafka_up,
            state="UP" if watch.kafka_up else "DOWN", paused=watch.paused,
            state_since=watch.state_since, in_queue=len(self.handle.producer),
            **self.stats.snapshot(),
            release="committed" if self.tracker.until_committed else "acknowledged",
            in_flight=self.tracker.in_flight, unconfirmed=self.tracker.unconfirmed,
            confirmed=self.tracker.confirmed_total, broker_batches=self.relay.batches,
            spool_depth=depth + self.writer.pending,
            spool_error=self.writer.last_error, spool_bytes=spooled_bytes,
            dropped=dropped, last_error=watch.last_error,
            last_error_at=watch.last_error_at)

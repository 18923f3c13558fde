"""The consumer's Kafka side: the events topic, in batches, offsets committed after the rows.

Each batch is written in one transaction (writer.py) and only then are its offsets committed:
a crash between the two redelivers the batch, which inserts nothing new. When the database
fails, offsets are not committed and the batch is held (held.py): the consumer backs off with
its partitions paused and writes the same messages again, so nothing is skipped.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from appliance.core.config import Settings
from appliance.core.kafka import base_config, client_logger, ensure_topic
from appliance.pipeline.consumer.held import HeldBatch
from appliance.pipeline.consumer.maintenance import Maintenance
from appliance.pipeline.consumer.reporter import Reporter
from appliance.pipeline.consumer.watchdog import ProgressWatchdog
from appliance.pipeline.consumer.writer import DB_ERRORS, BatchWriter

log = logging.getLogger("appliance.consumer")
BATCH_SIZE = 500  # a synchronous commit per 500 reached ~149k events/s on the embedded broker
BATCH_WAIT = 0.2  # seconds to wait for a first message: how fast a stop is noticed when idle
BACKOFF_START, BACKOFF_MAX = 0.5, 5.0  # seconds between database retries
TOPIC_RETRY = 2.0  # seconds between attempts to reach the broker at start


def consumer_config(settings: Settings) -> dict[str, Any]:
    return {
        "group.id": settings.kafka_consumer_group,
        "client.id": f"simple-time-service-consumer@{socket.gethostname()}",
        "enable.auto.commit": False,  # we commit after the database commit, never before
        "auto.offset.reset": "earliest",  # a new group starts at the oldest event: none skipped
        # A group join takes about session.timeout.ms / 2 on the embedded broker, 1 s at least
        # (measured: 23 s at the 45 s default, 3.1 s at 6 s, 2.0 s at 3 s, 1.0 s at 2 s and at
        # 1 s), and a dead consumer's partitions move on after it. 2 s for the embedded broker,
        # which rejoins after every recycle and at `up` (half of `up` -> ready); its heartbeats
        # come from librdkafka's own thread every 0.5 s, whatever Python is doing. 6 s is the
        # lowest a Kafka broker accepts by default (group.min.session.timeout.ms).
        "session.timeout.ms": 2000 if settings.embedded_broker else 6000,
        "heartbeat.interval.ms": 500 if settings.embedded_broker else 1500,
        # The embedded broker lists every record batch of the partition within this budget and
        # answers empty when it runs out (docs/embedded-broker.md): 100 ms leaves room for tens
        # of thousands of batches, while a caught-up fetch still returns within ~50 ms of data.
        "fetch.wait.max.ms": 100,
        **base_config(settings),
        "error_cb": lambda err: log.warning("kafka: %s", err.str()) if err.fatal() else None,
        "logger": client_logger("librdkafka.consumer"),
    }


def next_offsets(messages: list) -> list[TopicPartition]:
    """What to commit after the batch: each partition's last offset + 1."""
    last: dict[tuple[str, int], int] = {}
    for m in messages:
        key = (m.topic(), m.partition())
        last[key] = max(last.get(key, -1), m.offset())
    return [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]


class EventConsumer:
    def __init__(self, settings: Settings, writer: BatchWriter, stop: threading.Event) -> None:
        self.settings = settings
        self.writer = writer
        self.stop = stop
        self.consumer = Consumer(consumer_config(settings))
        self.assigned: set[int] = set()
        self.watchdog = ProgressWatchdog()
        self.maintenance = Maintenance(settings, writer.store)
        self.reporter = Reporter(settings.layout.consumer_report, writer, self.watchdog,
                                 self.maintenance)
        self.held = HeldBatch()  # a batch the database refused for now, written again
        self._backoff = BACKOFF_START

    def start(self) -> None:
        self.reporter.write(self.assigned)  # the agent sees a live consumer from the start
        self.writer.open_until_ready(self.stop)
        self._ensure_topic_until_ready()
        self.subscribe()
        log.info("consuming", extra={"topic": self.settings.kafka_topic_events,
                                     "group": self.settings.kafka_consumer_group,
                                     "database": self.settings.database_url.redacted()})

    def subscribe(self) -> None:
        self.consumer.subscribe([self.settings.kafka_topic_events], on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_lost)

    def step(self) -> int:
        """Consume and persist one batch; return how many messages it held."""
        messages = self.held.messages or [m for m in self._next_batch() if self._usable(m)]
        if messages:
            if self.writer.write(messages):
                self._commit(messages)
                if self.held:
                    self.held.release(self.consumer)
                self._backoff = BACKOFF_START
                self.watchdog.progressed()
            else:
                self._hold(messages)
        if self.maintenance.due() and self.writer.last_db_error is None:
            self._maintain()
        if self.reporter.due():
            self._observe()
        return len(messages)

    def _maintain(self) -> None:
        """Retention between batches; a failure here never stops consuming."""
        try:
            self.maintenance.step()
        except DB_ERRORS as exc:
            log.warning("database maintenance failed; will retry", extra={"error": str(exc)})
            self.maintenance.rest()

    def _next_batch(self) -> list:
        # consume(n, t) waits for n messages or t seconds, which would add t to every event's
        # latency at low traffic. Wait for the first message alone, then take whatever else is
        # already fetched: low latency when quiet, full batches under load.
        first = self.consumer.poll(BATCH_WAIT)
        if first is None:
            return []
        return [first, *self.consumer.consume(BATCH_SIZE - 1, 0)]

    @staticmethod
    def _usable(msg) -> bool:
        err = msg.error()
        if err is None:
            return True
        if err.code() != KafkaError._PARTITION_EOF:
            log.warning("consume error", extra={"error": err.str()})
        return False

    def _commit(self, messages: list) -> None:
        try:
            self.consumer.commit(offsets=next_offsets(messages), asynchronous=False)
        except KafkaException as exc:
            # The rows are safe; the batch will be redelivered and ignored as duplicates.
            log.warning("offset commit failed", extra={"error": str(exc.args[0])})

    def _hold(self, messages: list) -> None:
        """Keep running: hold the batch, back off with the partitions paused, then retry it."""
        self.reporter.write(self.assigned)  # the agent learns at once that writes fail
        log.warning("database write failed; will retry", extra={
            "error": self.writer.last_db_error, "retry_in_s": self._backoff,
            "held": len(messages), "database": self.settings.database_url.redacted()})
        self.held.add(messages)
        self.held.wait(self.consumer, self._backoff, self.stop, self._usable)
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    def _observe(self) -> None:
        self.watchdog.observe(self.lag(), self.writer.last_db_error is not None)
        if self.watchdog.should_recreate():
            self.recreate_client()
        self.reporter.write(self.assigned)

    def lag(self) -> int | None:
        """Events not persisted yet: those on the topic not read, and a held batch."""
        behind = assigned_lag(self.consumer)
        if not self.held:
            return behind
        return (behind or 0) + len(self.held.messages)

    def recreate_client(self) -> None:
        """A stalled client is replaced: the new one rejoins and starts at the committed offsets."""
        log.warning("replacing the stalled Kafka consumer client", extra={"lag": self.watchdog.lag})
        self.close_client()
        self.assigned = set()
        self.consumer = Consumer(consumer_config(self.settings))
        self.subscribe()

    def _on_assign(self, consumer, partitions) -> None:
        self.assigned = {p.partition for p in partitions}
        log.info("partitions assigned", extra={"partitions": sorted(self.assigned)})
        self.reporter.write(self.assigned)

    def _on_revoke(self, consumer, partitions) -> None:
        self.assigned -= {p.partition for p in partitions}
        self.held.forget(p.partition for p in partitions)
        self.reporter.write(self.assigned)

    def _on_lost(self, consumer, partitions) -> None:
        self.assigned -= {p.partition for p in partitions}
        self.held.forget(p.partition for p in partitions)
        log.warning("partitions lost (broker restart or session timeout); rejoining",
                    extra={"partitions": [p.partition for p in partitions]})

    def _ensure_topic_until_ready(self) -> None:
        while not self.stop.is_set():
            try:
                ensure_topic(self.consumer, self.settings, timeout=2.0)
                return
            except KafkaException as exc:
                log.warning("kafka not reachable yet", extra={"error": str(exc.args[0])})
                self.stop.wait(TOPIC_RETRY)

    def close_client(self) -> None:
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError):
            pass  # already closed or the broker is gone: nothing uncommitted is at risk


def assigned_lag(consumer: Consumer) -> int | None:
    """Events on the assigned partitions not read yet, from the watermarks the last fetch
    responses carried (no ListOffsets: the embedded broker answers it wrongly and slowly);
    None without an assignment."""
    try:
        assignment = consumer.assignment()
        if not assignment:
            return None
        return sum(partition_lag(consumer, tp) for tp in consumer.position(assignment))
    except (KafkaException, RuntimeError):
        return None


def partition_lag(consumer: Consumer, tp: TopicPartition) -> int:
    _, high = consumer.get_watermark_offsets(tp, cached=True)
    if high >= 0 and tp.offset >= 0:
        return max(0, high - tp.offset)
    if high > 0:  # nothing read yet on this partition: count from the commit
        committed = consumer.committed([tp], timeout=1.0)[0].offset
        return high - max(committed, 0)
    return 0

"""The consumer process: events topic -> SQLite, in batches, exactly one row per event.

Each batch is written in one transaction (duplicates ignored by the unique event_id) and only
then are its offsets committed: a crash between the two redelivers the batch, which inserts
nothing new. When the database fails, offsets are not committed, the consumer seeks back to
the batch's first offsets, backs off and tries again, so nothing is skipped.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import sqlite3
import sys
import time
from typing import Any

import peewee
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from appliance.schema import events, audit_db
from appliance.core import logs, metrics, tracing
from appliance.pipeline.consumer import persist
from appliance.core.config import Settings
from appliance.core.kafka import base_config, client_logger, ensure_topic
from appliance.core.metrics import M
from appliance.core.version import __version__
from appliance.pipeline.consumer.watchdog import ProgressWatchdog

log = logging.getLogger("appliance.consumer")
BATCH_SIZE = 500  # FACTS.md: a synchronous commit per 500 reached ~149k msg/s on Tansu
BATCH_WAIT = 0.2  # seconds to wait for a first message: how fast SIGTERM is noticed when idle
BACKOFF_START, BACKOFF_MAX = 0.5, 5.0  # seconds between database retries
DB_ERRORS = (peewee.PeeweeException, sqlite3.Error, OSError)
STATE_FILE = "consumer-state.json"
DRAIN_TIMEOUT = 10.0  # seconds the consumer keeps persisting after SIGTERM (embedded broker)


def consumer_config(settings: Settings, logger: logging.Logger) -> dict[str, Any]:
    return {
        "group.id": settings.kafka_consumer_group,
        "client.id": f"simple-time-service-consumer@{socket.gethostname()}",
        "enable.auto.commit": False,  # we commit after the database commit, never before
        "auto.offset.reset": "earliest",  # a new group starts at the oldest event: none skipped
        # A group join takes about session.timeout.ms / 2 on the embedded broker (measured: 23 s
        # at the 45 s default, 3.1 s at 6 s, 2.1 s at 3 s), and a dead consumer's partitions move
        # on after it. 3 s for the embedded broker, which rejoins after every recycle; 6 s is the
        # lowest a Kafka broker accepts by default (group.min.session.timeout.ms).
        "session.timeout.ms": 3000 if settings.embedded_broker else 6000,
        "heartbeat.interval.ms": 1000 if settings.embedded_broker else 1500,
        # The embedded broker lists every record batch of the partition within this budget and
        # answers empty when it runs out (docs/embedded-broker.md): 100 ms leaves room for
        # ~60,000 batches, while a caught-up fetch still returns within ~50 ms of new data.
        "fetch.wait.max.ms": 100,
        **base_config(settings),
        "error_cb": lambda err: log.warning("kafka: %s", err.str()) if err.fatal() else None,
        "logger": logger,
    }


class EventConsumer:
    def __init__(self, settings: Settings, store_: audit_db.Store | None = None) -> None:
        self.settings = settings
        self.store = store_ or audit_db.Store(settings.db_path)
        self.stop_requested = False
        self.persisted: dict[str, int] = {}
        self.dead_letters = 0
        self.db_errors = 0
        self.consumer = Consumer(consumer_config(settings, client_logger("librdkafka.consumer")))
        self._backoff = BACKOFF_START
        for model in audit_db.EVENT_MODELS:  # export 0, not "absent", before the first row
            M.persisted.labels(table=model._meta.table_name)
        self.last_db_error: str | None = None
        self.assigned: set[int] = set()
        self._state_written = 0.0
        self.watchdog = ProgressWatchdog()
        self.last_persisted_at: str | None = None

    def request_stop(self, *_args) -> None:
        self.stop_requested = True

    def run(self) -> int:
        self._write_state(force=True)  # the agent sees a live consumer from the start
        self._open_store_until_ready()
        self._ensure_topic_until_ready()
        self.subscribe()
        log.info("consuming", extra={"topic": self.settings.kafka_topic_events,
                                     "group": self.settings.kafka_consumer_group,
                                     "db_path": str(self.settings.db_path)})
        while not self.stop_requested:
            self.step()
        if self.settings.embedded_broker:
            self.drain()
        self.report_unpersisted()
        self.close()
        return 0

    def subscribe(self) -> None:
        self.consumer.subscribe([self.settings.kafka_topic_events], on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_lost)

    def recreate_client(self) -> None:
        """A stalled client is replaced: the new one rejoins and starts at the committed offsets."""
        log.warning("replacing the stalled Kafka consumer client", extra={"lag": self.watchdog.lag})
        self.close_client()
        self.assigned = set()
        self.consumer = Consumer(consumer_config(self.settings, client_logger("librdkafka.consumer")))
        self.subscribe()

    def report_unpersisted(self) -> None:
        """Say exactly how many events the topic still held when the consumer stopped."""
        lag = self.lag()
        if lag:
            where = ("the API's spool keeps them until they are persisted"
                     if self.settings.embedded_broker else "they stay in Kafka for the next start")
            log.warning(f"stopping with {lag} events not persisted yet; {where}",
                        extra={"lag": lag})

    def drain(self) -> None:
        """The embedded broker stops right after us and forgets everything it holds, and the
        API (stopped first) has flushed its last events into it: persist those before leaving."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while time.monotonic() < deadline:
            if self.step() == 0 and self._caught_up():
                break
        log.info("drained before stopping", extra={"persisted": self.persisted})

    def _caught_up(self) -> bool:
        """Nothing left to read on the assigned partitions (mid-rebalance, or with the broker
        gone, nothing can be read: the deadline bounds the wait either way)."""
        return not self.lag()

    def step(self) -> int:
        """Consume and persist one batch; return how many messages it held."""
        messages = [m for m in self._next_batch() if self._usable(m)]
        if messages and self._persist(messages):
            self._commit(messages)
            self.watchdog.progressed()
        self._write_state()
        return len(messages)

    def lag(self) -> int | None:
        """Events on the assigned partitions not read yet, from the watermarks the last fetch
        responses carried (no broker request); None without an assignment."""
        try:
            assignment = self.consumer.assignment()
            if not assignment:
                return None
            total = 0
            for tp in self.consumer.position(assignment):
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
                if high >= 0 and tp.offset >= 0:
                    total += max(0, high - tp.offset)
                elif high > 0:  # nothing read yet on this partition: count from the commit
                    committed = self.consumer.committed([tp], timeout=1.0)[0].offset
                    total += high - max(committed, 0)
            return total
        except (KafkaException, RuntimeError):
            return None

    def _next_batch(self) -> list:
        # consume(n, t) waits for n messages or t seconds (FACTS.md), which would add t to every
        # event's latency at low traffic. Wait for the first message alone, then take whatever
        # else is already fetched: low latency when quiet, full batches under load.
        first = self.consumer.poll(BATCH_WAIT)
        if first is None:
            return []
        return [first, *self.consumer.consume(BATCH_SIZE - 1, 0)]

    def _write_state(self, force: bool = False) -> None:
        """DATA_DIR/consumer-state.json, at most once a second: what the agent reports."""
        now = time.monotonic()
        if not force and now - self._state_written < 1.0:
            return
        self._state_written = now
        self.watchdog.observe(self.lag(), self.last_db_error is not None)
        if self.watchdog.should_recreate():
            self.recreate_client()
        watchdog = self.watchdog
        state = {"at": events.utc_now_iso(), "db_failing": self.last_db_error is not None,
                 "last_db_error": self.last_db_error, "db_errors": self.db_errors,
                 "persisted": self.persisted, "dead_letters": self.dead_letters,
                 "assigned_partitions": sorted(self.assigned), "lag": watchdog.lag,
                 "stalled": watchdog.stalled_since is not None,
                 "no_progress_s": round(watchdog.no_progress_s, 1), "stalls": watchdog.stalls,
                 "last_persisted_at": self.last_persisted_at}
        path = self.settings.data_dir / STATE_FILE
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state))
            tmp.replace(path)  # atomic: the agent never reads half a file
        except OSError:
            pass  # the state file is a courtesy to the agent; the events are what matter

    def _usable(self, msg) -> bool:
        err = msg.error()
        if err is None:
            return True
        if err.code() != KafkaError._PARTITION_EOF:
            log.warning("consume error", extra={"error": err.str()})
        return False

    def _persist(self, messages: list) -> bool:
        batch = persist.classify(messages, events.utc_now_iso())
        started, started_ns = time.perf_counter(), time.time_ns()
        try:
            db = self.store.open()
            with db.atomic():
                for model, rows in batch.rows.items():
                    audit_db.insert_ignore(model, rows)
                audit_db.insert_ignore(audit_db.DeadLetter, batch.dead_letters)
        except DB_ERRORS as exc:
            self._database_failed(messages, exc)
            return False
        self._backoff = BACKOFF_START
        self.last_db_error = None
        self.last_persisted_at = events.utc_now_iso()
        M.batch_duration.observe(time.perf_counter() - started)
        if tracing.enabled():
            self._trace(messages, started_ns)
        for model, rows in batch.rows.items():
            name = model._meta.table_name
            self.persisted[name] = self.persisted.get(name, 0) + len(rows)
            M.persisted.labels(table=name).inc(len(rows))
        if batch.dead_letters:
            self.dead_letters += len(batch.dead_letters)
            M.dead_letters.inc(len(batch.dead_letters))
            log.warning("dead letters stored", extra={"count": len(batch.dead_letters),
                                                      "first_error": batch.dead_letters[0]["error"]})
        log.debug("batch persisted", extra={"messages": len(messages),
                                            "ms": round((time.perf_counter() - started) * 1000, 2)})
        return True

    def _trace(self, messages: list, started_ns: int) -> None:
        """One CONSUMER span per persisted event, child of the span that produced it."""
        topic = self.settings.kafka_topic_events
        for msg in messages:
            span = tracing.consumer_span(topic, msg.headers(), started_ns)
            span.set_attributes({"messaging.kafka.offset": msg.offset(),
                                 "messaging.destination.partition.id": str(msg.partition())})
            span.end()

    def _database_failed(self, messages: list, exc: Exception) -> None:
        """Keep running: rewind to the batch's first offsets and retry after a back-off."""
        self.db_errors += 1
        M.db_errors.inc()
        self.last_db_error = f"{type(exc).__name__}: {exc}"
        self._write_state(force=True)
        self.store.close()
        log.warning("database write failed; will retry", extra={
            "error": f"{type(exc).__name__}: {exc}", "retry_in_s": self._backoff,
            "db_path": str(self.settings.db_path)})
        for partition in self._first_offsets(messages):
            try:
                self.consumer.seek(partition)
            except KafkaException as seek_error:  # partition revoked meanwhile: its new owner
                log.info("seek skipped", extra={"error": str(seek_error)})  # starts at the commit
        self._sleep(self._backoff)
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    @staticmethod
    def _first_offsets(messages: list) -> list[TopicPartition]:
        first: dict[tuple[str, int], int] = {}
        for m in messages:
            key = (m.topic(), m.partition())
            first[key] = min(first.get(key, m.offset()), m.offset())
        return [TopicPartition(t, p, o) for (t, p), o in first.items()]

    def _commit(self, messages: list) -> None:
        last: dict[tuple[str, int], int] = {}
        for m in messages:
            last[(m.topic(), m.partition())] = max(last.get((m.topic(), m.partition()), -1), m.offset())
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # The rows are safe; the batch will be redelivered and ignored as duplicates.
            log.warning("offset commit failed", extra={"error": str(exc.args[0])})

    def _on_assign(self, consumer, partitions) -> None:
        self.assigned = {p.partition for p in partitions}
        log.info("partitions assigned", extra={"partitions": sorted(self.assigned)})
        self._write_state(force=True)

    def _on_revoke(self, consumer, partitions) -> None:
        self.assigned -= {p.partition for p in partitions}
        self._write_state(force=True)

    def _on_lost(self, consumer, partitions) -> None:
        self.assigned -= {p.partition for p in partitions}
        log.warning("partitions lost (broker restart or session timeout); rejoining",
                    extra={"partitions": [p.partition for p in partitions]})

    def _open_store_until_ready(self) -> None:
        while not self.stop_requested:
            try:
                self.store.open()
                return
            except DB_ERRORS as exc:
                self.db_errors += 1
                log.warning("database not usable yet", extra={"error": str(exc),
                                                              "db_path": str(self.settings.db_path)})
                self._sleep(BACKOFF_MAX)

    def _ensure_topic_until_ready(self) -> None:
        while not self.stop_requested:
            try:
                ensure_topic(self.consumer, self.settings, timeout=2.0)
                return
            except KafkaException as exc:
                log.warning("kafka not reachable yet", extra={"error": str(exc.args[0])})
                self._sleep(2.0)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stop_requested and time.monotonic() < deadline:
            time.sleep(0.05)

    def close_client(self) -> None:
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError):
            pass  # already closed or the broker is gone: nothing uncommitted is at risk

    def close(self) -> None:
        """Leave the group cleanly (the rows of every committed batch are already safe)."""
        self.close_client()
        self.store.close()
        log.info("consumer stopped", extra={"persisted": self.persisted,
                                            "dead_letters": self.dead_letters})


def main(settings: Settings) -> int:
    logs.configure(settings.log_level)
    metrics.init(settings.metrics_dir, "consumer", __version__)
    if not settings.kafka_enabled:
        log.warning("KAFKA_BROKERS not set: nothing to consume; idling until stopped")
        return idle_until_signal()
    tracing.init(settings, "consumer")
    try:
        consumer = EventConsumer(settings)
    except KafkaException as exc:
        print(f"simple-time-service: invalid Kafka client configuration (KAFKA_* variables): "
              f"{exc.args[0].str()}", file=sys.stderr)
        return 2
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, consumer.request_stop)
    try:
        return consumer.run()
    finally:
        tracing.shutdown()


def idle_until_signal() -> int:
    # Under supervisord a program that exits at once is restarted in a loop and ends FATAL;
    # with Kafka off the consumer stays up, doing nothing, and says so once.
    stopped = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.append(True))
    while not stopped:
        time.sleep(0.2)
    return 0

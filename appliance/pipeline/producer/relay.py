"""The relay: one thread that moves events from the spool to Kafka and removes them when safe.

Each turn it serves delivery reports, sends what the spool holds beyond its cursor (while the
broker is up and not paused), deletes the rows the tracker released, and, when the release rule
is "committed", asks the consumer group's committed offsets. The spool is the one queue: live
events, events kept through an outage and events the broker lost all leave from it in id order.

At most WINDOW events are in Kafka's hands unconfirmed at a time; beyond that, new events wait
on disk: a consumer that stopped cannot make the embedded broker grow without bound.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from functools import partial

from confluent_kafka import KafkaException

from appliance.core import sensors
from appliance.core.config import Settings
from appliance.core.kafka import CommittedOffsets
from appliance.pipeline.producer.broker_watch import BrokerWatch, ProducerHandle
from appliance.pipeline.producer.confirmer import Confirmer
from appliance.pipeline.producer.delivery import DeliveryTracker
from appliance.pipeline.producer.reports import DeliveryReports
from appliance.pipeline.producer.spool import Spool

log = logging.getLogger("appliance.producer")
SEND_BATCH = 1000  # rows read from the spool per turn
WINDOW = 50_000  # events Kafka may hold unconfirmed; ~25 MB of the embedded broker's memory
TICK = 0.02  # seconds a turn waits for delivery reports: how soon a new event is sent


class Relay:
    def __init__(self, settings: Settings, spool: Spool, handle: ProducerHandle,
                 watch: BrokerWatch, tracker: DeliveryTracker, stats,
                 offsets: CommittedOffsets | None = None) -> None:
        self.topic = settings.kafka_topic_events
        self.spool, self.handle, self.watch, self.tracker, self.stats = (
            spool, handle, watch, tracker, stats)
        # With the embedded broker each API process writes a partition of its own (core/config
        # events_partitions): one writer per partition of Tansu's in-memory log.
        self.own_partition = spool.worker if settings.embedded_broker else None
        self.cursor = 1  # the next spool id to consider sending
        self.batches = 0  # record batches written to this incarnation of the topic
        if offsets is None and tracker.until_committed:
            offsets = CommittedOffsets(settings)
        self.confirmer = Confirmer(handle, watch, tracker, offsets) if offsets else None
        self.reports = DeliveryReports(tracker, watch, stats)
        self._sampled_at = 0.0
        self._forgotten_below = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kafka-relay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.turn()
            except KafkaException as exc:  # poll() raises a fatal error: the watch replaces it
                self.watch.note_failure(exc.args[0])
                self._stop.wait(TICK)
            except Exception:  # this thread is what delivers: it must outlive any surprise
                log.exception("relay turn failed; retrying")
                self._stop.wait(1.0)

    def turn(self) -> None:
        self.handle.producer.poll(TICK)  # delivery reports and statistics
        self.watch.check_pause()  # every turn: the agent waits for us to stop sending
        if self.confirmer and self.confirmer.follow_incarnation():
            self.batches = 0
        self._remove_released()  # before sending: a released row is tracked no more
        rewind = self.tracker.take_rewind()
        if rewind is not None:
            self.cursor = min(self.cursor, rewind)
        if self.watch.can_send:
            self._send()
        if self.confirmer:
            self.confirmer.confirm_if_due()
        self.reports.check_wedged()
        self.reports.count()
        self._sample_gauges()

    # --- sending ---------------------------------------------------------------------------

    def _send(self) -> None:
        if self.spool.last_id < self.cursor:
            return
        room = WINDOW - self.tracker.outstanding
        if room <= 0:
            return
        first = max(self.cursor, self.spool.dropped_below + 1)
        messages = self.spool.read_from(first, min(SEND_BATCH, room))
        tracked = self.tracker.tracked_among([message.id for message in messages])
        sent: list[tuple[int, int]] = []
        partition = self._partition()
        try:
            for message in messages:
                if message.id not in tracked:
                    if not self._produce(message, partition):
                        return
                    sent.append((message.id, message.size))
                self.cursor = message.id + 1
        finally:  # reports are served by poll() only, never before this
            self.tracker.sent_all(sent)

    def _produce(self, message, partition: dict[str, int]) -> bool:
        try:
            self.handle.producer.produce(
                self.topic, message.value, message.key, headers=message.headers or None,
                on_delivery=partial(self.reports.on_delivery, message.id), **partition)
        except BufferError:
            self.watch.note_error("local queue full")
            return False
        except KafkaException as exc:  # a fatal producer refuses; the watch replaces it
            self.watch.note_failure(exc.args[0])
            return False
        return True

    def _partition(self) -> dict[str, int]:
        """produce()'s partition: our own one, or the key's (the default partitioner). A topic
        with fewer partitions than API processes (made before WEB_PROCESSES went up, on a
        broker that kept running) is shared round the processes."""
        if self.own_partition is None:
            return {}
        return {"partition": self.own_partition % (self.watch.partitions or 1)}

    def on_stats(self, text: str) -> None:
        """librdkafka's statistics: count the record batches written to our topic."""
        try:
            self.batches += json.loads(text)["topics"][self.topic]["batchcnt"]["cnt"]
        except (KeyError, TypeError, ValueError):
            pass  # nothing produced to the topic in this window

    # --- releasing -------------------------------------------------------------------------

    def _remove_released(self) -> None:
        released = self.tracker.take_released()
        if released:
            self.spool.remove(released)
        if self.spool.dropped_below > self._forgotten_below:  # a full spool dropped rows
            self._forgotten_below = self.spool.dropped_below
            self.tracker.forget_below(self._forgotten_below)

    def _sample_gauges(self) -> None:
        now = time.monotonic()
        if now - self._sampled_at >= 1.0:
            self._sampled_at = now
            sensors.on_producer_levels(len(self.handle.producer), self.spool.depth,
                                       self.tracker.unconfirmed, self.spool.bytes,
                                       self.spool.max_bytes)

    # --- shutdown --------------------------------------------------------------------------

    def close(self, timeout: float) -> int:
        """Stop the thread, send what the spool holds, wait up to ``timeout`` for the reports;
        return how many events were not delivered (they stay in the spool)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        producer = self.handle.producer
        self._remove_released()
        if self.watch.can_send:
            self._send()
        remaining = producer.flush(timeout) if self.watch.kafka_up else len(producer)
        if remaining:
            producer.purge(in_queue=True, in_flight=True, blocking=True)
            deadline = time.monotonic() + 5
            while len(producer) and time.monotonic() < deadline:
                producer.poll(0.1)  # purged messages come back as failed reports
        if self.confirmer:
            self.confirmer.close()
        self._remove_released()
        self.reports.count()
        return remaining

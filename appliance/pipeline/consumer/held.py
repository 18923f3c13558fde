"""A batch the database could not take, held in memory until it can.

After a failed write the consumer tries the same messages again rather than seeking back and
fetching them anew: librdkafka's seek is asynchronous and says nothing when it does not take,
and a seek that did not take skips the batch for good once a later batch commits past it.
While a batch is held the assigned partitions are paused and the client is still polled, so
the group keeps the member however long the outage lasts and nothing new piles up in memory;
resuming fetches from the position after the last message the consumer was given.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from confluent_kafka import Consumer, KafkaException

POLL = 0.2  # seconds per poll while waiting: how fast a rebalance or a stop is served


class HeldBatch:
    def __init__(self) -> None:
        self.messages: list = []
        self._seen: set[tuple[str, int, int]] = set()

    def __bool__(self) -> bool:
        return bool(self.messages)

    def add(self, messages: Iterable) -> None:
        """Join messages to the batch, once each (a rejoin may deliver some again)."""
        for msg in messages:
            key = (msg.topic(), msg.partition(), msg.offset())
            if key not in self._seen:
                self._seen.add(key)
                self.messages.append(msg)

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions revoked or lost: their new owner starts at the commit; leave them to it."""
        gone = set(partitions)
        self.messages = [m for m in self.messages if m.partition() not in gone]
        self._seen = {key for key in self._seen if key[1] not in gone}

    def wait(self, consumer: Consumer, seconds: float, stop: threading.Event,
             usable: Callable[[object], bool]) -> None:
        """Pause and keep polling for ``seconds``. A message still arriving (fetched before the
        pause, or from a partition assigned meanwhile) joins the batch, never skipped."""
        deadline = time.monotonic() + seconds
        pause_assigned(consumer)
        while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            msg = consumer.poll(min(POLL, left))
            if msg is not None and usable(msg):
                self.add([msg])
                pause_assigned(consumer)

    def release(self, consumer: Consumer) -> None:
        """The batch is written: empty it and fetch on."""
        self.messages, self._seen = [], set()
        try:
            consumer.resume(consumer.assignment())
        except (KafkaException, RuntimeError):
            pass  # no assignment any more: the next one starts unpaused


def pause_assigned(consumer: Consumer) -> None:
    try:
        consumer.pause(consumer.assignment())
    except (KafkaException, RuntimeError):
        pass  # mid-rebalance: the next poll of wait() pauses what is assigned then

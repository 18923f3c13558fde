"""Release on commit: what the consumer group has committed is in the database, so it may
leave the spool. Only for the embedded broker, which forgets what it holds when it restarts.

Offsets mean something only within one incarnation of the topic (the broker restarts, the
topic is created anew with a new id, offsets start from 0 again), so a read of the committed
offsets is trusted only when the topic id is the same before and after it, and a new topic id
sends everything unconfirmed again.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import KafkaException

from appliance.core.kafka import CommittedOffsets
from appliance.pipeline.producer.broker_watch import (
    PROBE_INTERVAL,
    PROBE_TIMEOUT,
    BrokerWatch,
    ProducerHandle,
)
from appliance.pipeline.producer.delivery import DeliveryTracker

log = logging.getLogger("appliance.producer")
CONFIRM_INTERVAL = 0.5  # seconds between reads of the group's committed offsets


class Confirmer:
    def __init__(self, handle: ProducerHandle, watch: BrokerWatch, tracker: DeliveryTracker,
                 offsets: CommittedOffsets) -> None:
        self.handle, self.watch, self.tracker, self.offsets = handle, watch, tracker, offsets
        self.incarnation = watch.topic_id
        self._confirmed_at = 0.0

    def confirm_if_due(self) -> None:
        # Also while paused: the agent waits for everything sent to be confirmed before it
        # recycles the broker.
        now = time.monotonic()
        if self.tracker.unconfirmed and now - self._confirmed_at >= CONFIRM_INTERVAL:
            self._confirmed_at = now
            self.confirm()

    def confirm(self) -> int:
        """Release what the group has committed; how many events that was."""
        try:
            before = self.watch.read_topic_id()
            committed = self.offsets.read(self.watch.partitions or 1, PROBE_TIMEOUT)
            after = self.watch.read_topic_id()
        except KafkaException as exc:  # the broker is gone: try again after a probe interval
            self.watch.note_error(f"reading committed offsets: {exc.args[0]}")
            self._confirmed_at = time.monotonic() + PROBE_INTERVAL
            return 0
        if not before == after == self.incarnation:
            return 0  # the topic changed: follow_incarnation resets on the next turn
        return self.tracker.confirm(committed)

    def follow_incarnation(self) -> bool:
        """True when the topic was created anew since the last turn (everything unconfirmed
        is then sent again)."""
        current = self.watch.topic_id
        if current == self.incarnation:
            return False
        # Serve every report still queued first: one that arrives later cannot be from the old
        # incarnation, since the old broker is gone before the new topic exists.
        while self.handle.producer.poll(0):
            pass
        resent = self.tracker.reset()
        self.incarnation = current
        if resent:
            log.warning("broker lost unconfirmed events; sending them again from the spool",
                        extra={"events": resent})
        return True

    def close(self) -> None:
        if self.tracker.unconfirmed and self.watch.kafka_up:
            self.confirm()
        self.offsets.close()

"""The relay and the delivery tracker against a small fake producer: what leaves the spool, and
when. (The same behaviour against a real broker is in test_pipeline.py and test_sustained_load.py.)"""

from __future__ import annotations

import collections
from types import SimpleNamespace

from appliance.core import sensors
from appliance.core.config import Settings
from appliance.pipeline.producer.delivery import DeliveryTracker
from appliance.pipeline.producer.relay import WINDOW, Relay
from appliance.pipeline.producer.sink import Stats
from appliance.pipeline.producer.spool import Spool


class FakeMessage:
    def __init__(self, value: bytes, partition: int, offset: int) -> None:
        self._value, self._partition, self._offset = value, partition, offset

    def value(self) -> bytes:
        return self._value

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


class FakeProducer:
    """Accepts produce(); poll() reports every pending message delivered (or failed)."""

    def __init__(self) -> None:
        self.pending: list[tuple[bytes, object]] = []
        self.sent: list[bytes] = []
        self.next_offset = 0
        self.fail_next = 0
        self.partitions: list[int] = []  # what each produce() asked: -1 for the partitioner's

    def produce(self, topic, value, key=None, headers=None, on_delivery=None, partition=-1) -> None:
        self.pending.append((value, on_delivery))
        self.sent.append(value)
        self.partitions.append(partition)

    def poll(self, timeout: float = 0) -> int:
        served, self.pending = self.pending, []
        for value, callback in served:
            if self.fail_next:
                self.fail_next -= 1
                callback(SimpleNamespace(str=lambda: "timed out"), FakeMessage(value, 0, -1))
            else:
                callback(None, FakeMessage(value, 0, self.next_offset))
                self.next_offset += 1
        return len(served)

    def flush(self, timeout: float) -> int:
        self.poll()
        return 0

    def __len__(self) -> int:
        return len(self.pending)


class FakeWatch:
    def __init__(self) -> None:
        self.kafka_up = self.can_send = True
        self.partitions = 1
        self.topic_id = "incarnation-1"
        self.ids_read: list[str] = []
        self.errors: list[str] = []

    def check_pause(self) -> None:
        pass

    def read_topic_id(self) -> str:
        return self.ids_read.pop(0) if self.ids_read else self.topic_id

    def note_error(self, text: str) -> None:
        self.errors.append(text)

    def note_failure(self, err) -> None:
        self.errors.append(str(err))

    def mark_fatal(self) -> None:
        self.errors.append("fatal")


class FakeOffsets:
    def __init__(self) -> None:
        self.committed: dict[int, int] = {}

    def read(self, partitions: int, timeout: float) -> dict[int, int]:
        return dict(self.committed)


def event(i: int) -> tuple[bytes, bytes, None]:
    return (f"r{i}".encode(), f'{{"event_type":"http_request","i":{i}}}'.encode(), None)


def relay_on(tmp_path, until_committed: bool):
    spool = Spool(tmp_path, 10_000_000)
    producer, watch, offsets = FakeProducer(), FakeWatch(), FakeOffsets()
    relay = Relay(Settings(data_dir=tmp_path), spool, SimpleNamespace(producer=producer), watch,
                  DeliveryTracker(until_committed), Stats(), offsets if until_committed else None)
    return relay, spool, producer, watch, offsets


def embedded_relay(tmp_path, worker: int, partitions: int) -> tuple[Relay, FakeProducer]:
    """The relay of API process ``worker`` with the embedded broker's topic of ``partitions``."""
    producer, watch = FakeProducer(), FakeWatch()
    watch.partitions = partitions
    relay = Relay(Settings(data_dir=tmp_path, kafka_brokers="embedded"),
                  Spool(tmp_path, 10_000_000, worker), SimpleNamespace(producer=producer), watch,
                  DeliveryTracker(True), Stats(), FakeOffsets())
    return relay, producer


def test_with_the_embedded_broker_each_api_process_writes_its_own_partition(tmp_path):
    producers = []
    for worker in (0, 1):
        relay, producer = embedded_relay(tmp_path, worker, partitions=2)
        relay.spool.append([event(i) for i in range(3)])
        relay.turn()
        producers.append(producer)
    assert [p.partitions for p in producers] == [[0, 0, 0], [1, 1, 1]]


def test_a_topic_with_fewer_partitions_than_api_processes_is_shared_round_them(tmp_path):
    relay, producer = embedded_relay(tmp_path, 2, partitions=1)  # made before WEB_PROCESSES=3
    relay.spool.append([event(0)])
    relay.turn()
    assert producer.partitions == [0]


def test_an_external_cluster_gets_the_key_partitioner(tmp_path):
    relay, spool, producer, _, _ = relay_on(tmp_path, until_committed=False)
    spool.append([event(0)])
    relay.turn()
    assert producer.partitions == [-1]


def turns(relay: Relay, count: int = 3) -> None:
    for _ in range(count):
        relay.turn()
        if relay.confirmer:  # confirm on every turn, not every CONFIRM_INTERVAL
            relay.confirmer._confirmed_at = 0


def test_acknowledged_events_leave_the_spool_in_order(tmp_path):
    relay, spool, producer, _, _ = relay_on(tmp_path, until_committed=False)
    spool.append([event(i) for i in range(5)])
    turns(relay)
    assert producer.sent == [event(i)[1] for i in range(5)]
    assert spool.depth == 0 and relay.stats.values["delivered"] == 5


def test_with_the_embedded_broker_events_stay_until_the_group_committed_past_them(tmp_path):
    relay, spool, producer, _, offsets = relay_on(tmp_path, until_committed=True)
    spool.append([event(i) for i in range(5)])
    turns(relay)
    assert len(producer.sent) == 5 and spool.depth == 5 and relay.tracker.unconfirmed == 5
    offsets.committed = {0: 3}  # offsets 0, 1, 2 persisted
    turns(relay)
    assert spool.depth == 2 and relay.tracker.unconfirmed == 2
    assert [m.value for m in spool.read_from(1, 10)] == [event(3)[1], event(4)[1]]
    assert len(producer.sent) == 5  # nothing sent twice


def test_a_failed_delivery_is_sent_again_and_nothing_else_twice(tmp_path):
    relay, spool, producer, _, _ = relay_on(tmp_path, until_committed=False)
    spool.append([event(i) for i in range(4)])
    producer.fail_next = 1
    turns(relay)
    assert sorted(producer.sent) == sorted([event(0)[1], *(event(i)[1] for i in range(4))])
    assert spool.depth == 0


def test_a_new_incarnation_of_the_topic_gets_every_unconfirmed_event_again(tmp_path):
    relay, spool, producer, watch, offsets = relay_on(tmp_path, until_committed=True)
    spool.append([event(i) for i in range(3)])
    turns(relay)
    watch.topic_id = "incarnation-2"  # the broker restarted and forgot everything
    offsets.committed = {0: 10}  # offsets of the new topic: they say nothing about the old one
    relay.turn()
    assert spool.depth == 3, "nothing may be released on the old incarnation's behalf"
    assert producer.sent.count(event(0)[1]) == 2 and len(producer.sent) == 6


def test_offsets_read_across_a_restart_release_nothing(tmp_path):
    relay, spool, _, watch, offsets = relay_on(tmp_path, until_committed=True)
    spool.append([event(i) for i in range(3)])
    turns(relay)
    offsets.committed = {0: 3}
    watch.ids_read = ["incarnation-1", "incarnation-2"]  # the topic changed between the reads
    assert relay.confirmer.confirm() == 0 and spool.depth == 3


def test_paused_or_down_sends_nothing_and_resumes_where_it_stopped(tmp_path):
    relay, spool, producer, watch, _ = relay_on(tmp_path, until_committed=False)
    watch.can_send = False
    spool.append([event(i) for i in range(3)])
    turns(relay)
    assert producer.sent == [] and spool.depth == 3
    watch.can_send = True
    turns(relay)
    assert len(producer.sent) == 3 and spool.depth == 0


def test_no_more_than_the_window_is_out_unconfirmed(tmp_path, monkeypatch):
    monkeypatch.setattr("appliance.pipeline.producer.relay.WINDOW", 4)
    relay, spool, producer, _, offsets = relay_on(tmp_path, until_committed=True)
    spool.append([event(i) for i in range(10)])
    turns(relay)
    assert len(producer.sent) == 4
    offsets.committed = {0: 4}
    turns(relay)
    assert len(producer.sent) == 8 and spool.depth == 6
    assert WINDOW >= 10_000  # the real window leaves a consumer seconds of slack


def test_tracker_forgets_rows_a_full_spool_dropped():
    tracker = DeliveryTracker(until_committed=True)
    for row_id in (1, 2, 3):
        tracker.sent(row_id, 10)
        tracker.delivered(row_id, 0, row_id)
    tracker.forget_below(2)
    assert tracker.unconfirmed == 1 and tracker.confirm({0: 10}) == 1
    assert tracker.take_released() == [(3, 10)]



class CountingMetric:
    """Stands in for a labelled Prometheus counter: the total per label values."""

    def __init__(self) -> None:
        self.totals: collections.Counter = collections.Counter()

    def labels(self, *values):
        return SimpleNamespace(inc=lambda amount=1: self.totals.update({values: amount}))


def test_events_handed_over_reach_the_metric_by_type_at_the_next_turn(tmp_path, monkeypatch):
    metric = CountingMetric()
    monkeypatch.setattr(sensors.SERIES, "produced", metric)
    relay, _, _, _, _ = relay_on(tmp_path, until_committed=False)
    relay.stats.add_events("spooled", ["http_request", "http_request", "custom"])
    assert relay.stats.values["spooled"] == 3 and not metric.totals  # /kafka/status at once
    relay.turn()
    assert metric.totals == {("http_request", "spooled"): 2, ("custom", "spooled"): 1}
    relay.turn()  # counted once
    assert metric.totals == {("http_request", "spooled"): 2, ("custom", "spooled"): 1}

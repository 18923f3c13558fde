"""The sink and the broker watch against small fake Kafka clients: what a request gets back, what
the spool keeps, what pauses and recoveries do. (Against the real broker: test_pipeline.py.)"""

from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, KafkaException
from test_relay import FakeMessage, FakeOffsets, FakeProducer

from appliance.core.config import Settings
from appliance.pipeline.producer.sink import KafkaEventSink
from appliance.pipeline.producer.spool import Spool
from appliance.schema import events

TOPIC = "simple-time-events"


class ClusterProducer(FakeProducer):
    """A fake producer that also answers metadata for a cluster it shares with FakeAdmin."""

    def __init__(self, cluster: "Cluster") -> None:
        super().__init__()
        self.cluster = cluster
        self.purged = False

    def list_topics(self, timeout: float = 0):
        if not self.cluster.up:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "broker down"))
        partitions = {p: None for p in range(self.cluster.topics.get(TOPIC, {}).get("partitions", 0))}
        topics = {name: SimpleNamespace(partitions=partitions, error=None) for name in self.cluster.topics}
        return SimpleNamespace(topics=topics)

    def purge(self, **_options) -> None:
        self.purged = True
        served, self.pending = self.pending, []
        for value, callback in served:
            callback(SimpleNamespace(str=lambda: "purged"), FakeMessage(value, 0, -1))


class Cluster:
    def __init__(self) -> None:
        self.up = True
        self.topics: dict[str, dict] = {}
        self.created = 0

    def create_topics(self, new_topics, operation_timeout: float = 0):
        results = {}
        for topic in new_topics:
            self.created += 1
            self.topics[topic.topic] = {"partitions": topic.num_partitions, "id": f"id-{self.created}"}
            future: Future = Future()
            future.set_result(None)
            results[topic.topic] = future
        return results

    def describe_topics(self, collection, request_timeout: float = 0):
        future: Future = Future()
        topic = self.topics.get(TOPIC)
        if topic is None:
            future.set_exception(KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)))
        else:
            future.set_result(SimpleNamespace(topic_id=topic["id"]))
        return {TOPIC: future}


@pytest.fixture
def cluster():
    return Cluster()


def make_sink(tmp_path, cluster: Cluster, **env) -> KafkaEventSink:
    settings = Settings.from_env({"DATA_DIR": str(tmp_path), "KAFKA_BROKERS": "fake:9092", **env})
    producers: list[ClusterProducer] = []

    def make_producer() -> ClusterProducer:
        producers.append(ClusterProducer(cluster))
        return producers[-1]

    sink = KafkaEventSink(settings, Spool(settings.spool_dir, 1_000_000), make_producer, cluster,
                          FakeOffsets())
    sink.producers = producers
    return sink


def an_event(request_id: str = "r1") -> dict:
    return events.make_event(events.HTTP_REQUEST, request_id, "test", {"path": "/"})


def test_the_first_probe_creates_the_topic_with_one_partition_for_one_api_process(tmp_path, cluster):
    sink = make_sink(tmp_path, cluster, KAFKA_BROKERS="embedded", WEB_PROCESSES="1")
    sink.watch.probe()
    assert cluster.topics[TOPIC]["partitions"] == 1 and sink.kafka_up
    assert sink.status().release == "committed"


def test_with_several_api_processes_the_embedded_topic_has_a_partition_for_each(tmp_path, cluster):
    sink = make_sink(tmp_path, cluster, KAFKA_BROKERS="embedded", WEB_PROCESSES="3")
    sink.watch.probe()
    assert cluster.topics[TOPIC]["partitions"] == 3 and sink.watch.partitions == 3


def test_an_event_is_queued_while_kafka_is_up_and_its_report_releases_it(tmp_path, cluster):
    sink = make_sink(tmp_path, cluster)
    sink.watch.probe()
    assert sink.emit(an_event(), durable=True) == "queued"
    assert sink.spool.depth == 1  # on disk before it goes anywhere
    for _ in range(3):
        sink.relay.turn()
    assert sink.spool.depth == 0 and sink.status().delivered == 1


def test_while_kafka_is_down_events_are_spooled_on_disk_and_sent_once_it_is_back(tmp_path, cluster):
    cluster.up = False
    sink = make_sink(tmp_path, cluster)
    sink.watch.probe()
    assert not sink.kafka_up and "broker down" in sink.status().last_error
    assert [sink.emit(an_event(f"r{i}"), durable=True) for i in range(3)] == ["spooled"] * 3
    sink.relay.turn()
    assert sink.spool.depth == 3 and sink.producers[0].sent == []
    cluster.up = True
    sink.watch.probe()
    for _ in range(3):
        sink.relay.turn()
    assert len(sink.producers[0].sent) == 3 and sink.spool.depth == 0


def test_the_pause_flag_stops_sending_at_once_and_its_removal_resumes(tmp_path, cluster):
    sink = make_sink(tmp_path, cluster, KAFKA_BROKERS="embedded")
    sink.watch.probe()
    sink.settings.layout.pause_flag.touch()
    sink.emit(an_event(), durable=True)
    sink.relay.turn()
    assert sink.status().paused is True and sink.producers[0].sent == []
    sink.settings.layout.pause_flag.unlink()
    sink.relay.turn()
    sink.watch.probe()  # the keeper, woken by the relay
    sink.relay.turn()
    assert len(sink.producers[0].sent) == 1


def test_a_recreated_topic_is_a_new_incarnation(tmp_path, cluster):
    sink = make_sink(tmp_path, cluster, KAFKA_BROKERS="embedded")
    sink.watch.probe()
    first = sink.watch.topic_id
    cluster.topics.clear()  # the broker restarted and forgot everything
    sink.watch.probe()
    assert sink.watch.topic_id not in (None, first)


def test_a_fatal_producer_is_replaced_and_what_it_held_is_sent_again(tmp_path, cluster):
    sink = make_sink(tmp_path, cluster)
    sink.watch.probe()
    sink.emit(an_event(), durable=True)
    dead = sink.producers[0]
    dead.poll = lambda timeout=0: 0  # it accepts and never reports: wedged
    sink.relay.turn()
    assert len(dead.sent) == 1 and sink.tracker.in_flight == 1
    sink.watch.on_error(KafkaError(KafkaError._FATAL, "fatal", fatal=True))
    sink.handle.replace()  # what the keeper thread does when it wakes
    assert dead.purged and sink.tracker.in_flight == 0
    for _ in range(3):
        sink.relay.turn()
    assert len(sink.producers[1].sent) == 1 and sink.spool.depth == 0


def test_an_event_the_spool_cannot_take_is_lost_and_counted(tmp_path, cluster):
    sink = make_sink(tmp_path, cluster)
    sink.writer.close()  # nothing is accepted any more
    assert sink.emit(an_event()) == "lost"
    assert sink.status().lost == 1


def test_the_disabled_sink_answers_everything_the_routes_ask():
    from appliance.api.http.sink import DisabledSink

    sink = DisabledSink()
    sink.start()
    assert sink.emit(an_event()) == "disabled" and sink.flush(1) == 0
    assert sink.status().connected is False and not sink.kafka_up
    sink.close()

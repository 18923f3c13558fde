"""Kafka pieces shared by the producer, the consumer and the agent."""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from appliance.core import sensors
from appliance.core.config import Settings
from appliance.core.logs import RateLimitFilter
from appliance.core.process import StartupError

log = logging.getLogger("appliance.kafka")


@contextlib.contextmanager
def checked_client_config() -> Iterator[None]:
    """librdkafka refuses an unknown or invalid property when a client is made: that is the
    operator's KAFKA_* variables, so say it in one line instead of a traceback."""
    try:
        yield
    except KafkaException as exc:
        raise StartupError(f"invalid Kafka client configuration (KAFKA_* variables): "
                           f"{exc.args[0].str()}") from None


def base_config(settings: Settings) -> dict[str, Any]:
    """bootstrap.servers plus every extra KAFKA_* property (security, SASL, TLS, tuning)."""
    return {"bootstrap.servers": settings.kafka_bootstrap, **settings.kafka_extra}


def ensure_topic(client, settings: Settings, timeout: float, admin: AdminClient | None = None) -> int:
    """Return the events topic's partition count, creating it with KAFKA_PARTITIONS if missing.

    Lists all topics rather than asking for ours: a metadata request naming a missing topic
    makes brokers with auto-create (Tansu among them) create it with their default count.
    Raises KafkaException when the broker cannot be reached within ``timeout``.
    """
    topic = settings.kafka_topic_events
    metadata = client.list_topics(timeout=timeout)
    if topic in metadata.topics and not metadata.topics[topic].error:
        return len(metadata.topics[topic].partitions)
    admin = admin or AdminClient(base_config(settings))
    partitions = settings.events_partitions
    future = admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=timeout)[topic]
    try:
        future.result(timeout)
        log.info("created topic", extra={"topic": topic, "partitions": partitions})
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
    return partitions


def topic_id(admin: AdminClient, topic: str, timeout: float) -> str | None:
    """The topic's id (a new one each time the topic is created), or None if it is missing."""
    future = admin.describe_topics(TopicCollection([topic]), request_timeout=timeout)[topic]
    try:
        description = future.result(timeout)
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            return None
        raise
    return str(description.topic_id) if description.topic_id else None


class CommittedOffsets:
    """The consumer group's committed offsets, read by a client that never joins the group."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.kafka_topic_events
        self._client = Consumer({**base_config(settings), "group.id": settings.kafka_consumer_group,
                                 "enable.auto.commit": False, "log_level": 0})

    def read(self, partitions: int, timeout: float) -> dict[int, int]:
        """partition -> next offset the group will read (negative: nothing committed yet)."""
        wanted = [TopicPartition(self.topic, p) for p in range(partitions)]
        return {tp.partition: tp.offset for tp in self._client.committed(wanted, timeout=timeout)
                if tp.error is None}

    def close(self) -> None:
        self._client.close()


def client_logger(name: str) -> logging.Logger:
    """The logger librdkafka writes through: JSON like ours, and rate-limited (and counted),
    because librdkafka logs a connection failure about ten times a second while a broker is
    down."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RateLimitFilter) for f in logger.filters):
        logger.addFilter(RateLimitFilter(30.0, on_suppress=sensors.on_librdkafka_line_suppressed))
    return logger

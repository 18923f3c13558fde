"""Kafka pieces shared by the producer, the consumer and the agent."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from .config import Settings
from .logs import RateLimitFilter
from .metrics import M

log = logging.getLogger("appliance.kafka")


def base_config(settings: Settings) -> dict[str, Any]:
    """bootstrap.servers plus every extra KAFKA_* property (security, SASL, TLS, tuning)."""
    return {"bootstrap.servers": settings.kafka_bootstrap, **settings.kafka_extra}


def ensure_topic(client, settings: Settings, timeout: float) -> int:
    """Return the events topic's partition count, creating it with KAFKA_PARTITIONS if missing.

    Lists all topics rather than asking for ours: a metadata request naming a missing topic
    makes brokers with auto-create (Tansu among them) create it with their default count.
    Raises KafkaException when the broker cannot be reached within ``timeout``.
    """
    topic = settings.kafka_topic_events
    metadata = client.list_topics(timeout=timeout)
    if topic in metadata.topics and not metadata.topics[topic].error:
        return len(metadata.topics[topic].partitions)
    admin = AdminClient(base_config(settings))
    future = admin.create_topics([NewTopic(topic, settings.kafka_partitions, 1)],
                                 operation_timeout=timeout)[topic]
    try:
        future.result(timeout)
        log.info("created topic", extra={"topic": topic, "partitions": settings.kafka_partitions})
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
    return settings.kafka_partitions


def client_logger(name: str) -> logging.Logger:
    """The logger librdkafka writes through: JSON like ours, and rate-limited (and counted),
    because librdkafka logs a connection failure about ten times a second while a broker is
    down."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RateLimitFilter) for f in logger.filters):
        logger.addFilter(RateLimitFilter(30.0, on_suppress=lambda: M.librdkafka_log_suppressed.inc()))
    return logger

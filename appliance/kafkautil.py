"""Kafka pieces shared by the producer, the consumer and the agent."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from .config import Settings
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


class RateLimitFilter(logging.Filter):
    """Let one line per (logger, message) through per ``interval``; count what it holds back.

    librdkafka logs a connection failure about ten times a second while a broker is down.
    """

    def __init__(self, interval: float) -> None:
        super().__init__()
        self.interval = interval
        self.suppressed = 0
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.getMessage()[:60])  # stable prefix: facility and peer
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -1e9) < self.interval:
                self.suppressed += 1
                M.librdkafka_log_suppressed.inc()
                return False
            self._last[key] = now
            if len(self._last) > 1000:  # bounded memory for varied messages
                self._last.clear()
        record.suppressed_total = self.suppressed
        return True

"""The consumer program: persist every event from the topic until stopped, then leave cleanly."""

from __future__ import annotations

import logging
import time

from appliance.core import process
from appliance.core.config import Settings
from appliance.core.kafka import checked_client_config
from appliance.core.process import Runtime
from appliance.pipeline.consumer.consumer import EventConsumer
from appliance.pipeline.consumer.health import HealthListener, Heartbeat
from appliance.pipeline.consumer.writer import BatchWriter

log = logging.getLogger("appliance.consumer")
DRAIN_TIMEOUT = 10.0  # seconds the consumer keeps persisting after SIGTERM (embedded broker)


def consume(runtime: Runtime, settings: Settings) -> int:
    heartbeat = Heartbeat()
    try:
        listener = health_listener(settings, heartbeat)
    except OSError as exc:
        log.error(f"CONSUMER_HEALTH_PORT: cannot listen on {settings.admin_host}:"
                  f"{settings.consumer_health_port}: {exc.strerror or exc}")
        return 2
    try:
        return consume_until_stopped(runtime, settings, heartbeat)
    finally:
        if listener is not None:
            listener.close()


def health_listener(settings: Settings, heartbeat: Heartbeat) -> HealthListener | None:
    if settings.consumer_health_port is None:
        return None
    return HealthListener(settings.admin_host, settings.consumer_health_port, heartbeat).start()


def consume_until_stopped(runtime: Runtime, settings: Settings, heartbeat: Heartbeat) -> int:
    if not settings.kafka_enabled:
        log.warning("KAFKA_BROKERS not set: nothing to consume; idling until stopped")
        return process.idle(runtime)
    writer = BatchWriter(settings)
    with checked_client_config():
        consumer = EventConsumer(settings, writer, runtime.stop)
    consumer.start()
    heartbeat.started()
    while not runtime.stop.is_set():
        consumer.step()
        heartbeat.beat()
    heartbeat.ready = False
    if settings.embedded_broker:
        drain(consumer)
    report_unpersisted(consumer, settings)
    consumer.close_client()  # leave the group: the rows of every committed batch are safe
    writer.close()
    log.info("consumer stopped", extra={"persisted": writer.persisted,
                                        "dead_letters": writer.dead_letters})
    return 0


def drain(consumer: EventConsumer) -> None:
    """The embedded broker stops right after us and forgets everything it holds, and the API
    (stopped first) has sent its last events into it: persist those before leaving. Nothing is
    left to read once the lag is 0, or None (mid-rebalance, or the broker gone)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while time.monotonic() < deadline:
        if consumer.step() == 0 and not consumer.lag():
            break
    log.info("drained before stopping", extra={"persisted": consumer.writer.persisted})


def report_unpersisted(consumer: EventConsumer, settings: Settings) -> None:
    """Say exactly how many events the topic still held when the consumer stopped."""
    lag = consumer.lag()
    if lag:
        where = ("the API's spool keeps them until they are persisted" if settings.embedded_broker
                 else "they stay in Kafka for the next start")
        log.warning(f"stopping with {lag} events not persisted yet; {where}", extra={"lag": lag})

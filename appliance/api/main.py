"""The API process: build the services, serve, shut down in order."""

from __future__ import annotations

import logging
import sys

from confluent_kafka import KafkaException

from appliance.core import logs, metrics, tracing
from appliance.api.app import create_app
from appliance.core.config import Settings
from appliance.schema.events import DisabledSink, EventSink
from appliance.api.server import ApiServer, bind
from appliance.api.services import Services
from appliance.core.version import __version__

log = logging.getLogger("appliance.api")


class StartupError(Exception):
    """The API cannot start; the message is the one line the operator sees."""


def build_sink(settings: Settings) -> EventSink:
    if not settings.kafka_enabled:
        log.warning("KAFKA_BROKERS not set: Kafka is off, events are not recorded")
        return DisabledSink()
    from appliance.pipeline.producer.sink import KafkaEventSink
    from appliance.pipeline.producer.spool import Spool
    try:
        spool = Spool(settings.spool_dir, int(settings.spool_max_mb * 1024 * 1024))
    except Exception as exc:  # sqlite3.Error or OSError: either way the spool is unusable
        raise StartupError(f"SPOOL_DIR={settings.spool_dir}: cannot open the spool: {exc}") from None
    try:
        return KafkaEventSink(settings, spool)
    except KafkaException as exc:
        raise StartupError(f"invalid Kafka client configuration (KAFKA_* variables): "
                           f"{exc.args[0].str()}") from None


def main(settings: Settings) -> int:
    logs.configure(settings.log_level)
    metrics.init(settings.metrics_dir, "api", __version__)
    try:
        sock = bind(settings.host, settings.port)
        sink = build_sink(settings)
    except OSError as exc:
        print(f"simple-time-service: cannot listen on {settings.host}:{settings.port}: "
              f"{exc.strerror or exc} (check HOST and PORT)", file=sys.stderr)
        return 1
    except StartupError as exc:
        print(f"simple-time-service: {exc}", file=sys.stderr)
        return 2
    services = Services(settings, sink=sink)
    tracing.init(settings, "api", services.host.pod_ip)
    if hasattr(sink, "start"):
        sink.start()

    def stopped() -> None:
        getattr(sink, "close", lambda: None)()
        tracing.shutdown()

    server = ApiServer(create_app(settings, services), settings, services.lifecycle, sock,
                       on_stopped=stopped)
    return server.serve()

"""What each program of the appliance is made of, and how it starts.

- ``api``: the HTTP API (api/) with the producer side of the pipeline (pipeline/producer/) as
  its event sink: the one place where the two meet.
- ``consumer``: the consumer side of the pipeline (pipeline/consumer/).
- ``agent``: the status agent (agent/).

Each runs inside core.process.run: logs, metrics, tracing, signals, one-line startup errors.
"""

from __future__ import annotations

import logging

from appliance.api.host import host_info
from appliance.api.sink import DisabledSink, EventSink
from appliance.core import process
from appliance.core.config import Settings
from appliance.core.kafka import checked_client_config
from appliance.core.process import StartupError

log = logging.getLogger("appliance.api")


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
    with checked_client_config():
        return KafkaEventSink(settings, spool)


def run_api(settings: Settings) -> int:
    from appliance.api.main import serve
    return process.run(settings, "api", lambda runtime: serve(runtime, settings, build_sink(settings)),
                       pod_ip=host_info(settings).pod_ip)


def run_consumer(settings: Settings) -> int:
    from appliance.pipeline.consumer.main import consume
    return process.run(settings, "consumer", lambda runtime: consume(runtime, settings))


def run_agent(settings: Settings) -> int:
    from appliance.agent.main import watch
    return process.run(settings, "agent", lambda runtime: watch(runtime, settings))

"""What each program of the appliance is made of, and how it starts.

- ``api``: the HTTP API (api/) with the producer side of the pipeline (pipeline/producer/) as
  its event sink: the one place where the two meet.
- ``consumer``: the consumer side of the pipeline (pipeline/consumer/).
- ``agent``: the status agent (agent/).

Each runs inside core.process.run: logs, metrics, tracing, signals, one-line startup errors.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING, Iterator

from appliance.api.host import host_info
from appliance.api.sink import DisabledSink, EventSink
from appliance.api.workers import WorkerSlot
from appliance.core import process
from appliance.core.config import Settings
from appliance.core.kafka import checked_client_config
from appliance.core.process import StartupError
from appliance.schema.spool import read_one, spool_file, spool_files

if TYPE_CHECKING:
    from appliance.pipeline.producer.spool import Spool

log = logging.getLogger("appliance.api")


def build_sink(settings: Settings, slot: WorkerSlot | None = None) -> EventSink:
    if not settings.kafka_enabled:
        if slot is None or slot.index == 0:
            log.warning("KAFKA_BROKERS not set: Kafka is off, events are not recorded")
        return DisabledSink()
    from appliance.pipeline.producer.sink import KafkaEventSink
    with checked_client_config():
        sink = KafkaEventSink(settings, open_spool(settings, slot))
    if slot is None:
        return sink
    from appliance.api.peers import WorkerGroupSink
    try:
        return WorkerGroupSink(sink, slot.index, slot.count, settings.layout,
                               lambda i: worker_spool_depth(settings, i))
    except OSError as exc:
        raise StartupError(f"DATA_DIR={settings.data_dir}: cannot listen on "
                           f"{settings.layout.api_socket(slot.index)}: {exc.strerror or exc} "
                           f"(a Unix socket path must be shorter than 108 bytes)") from None


def open_spool(settings: Settings, slot: WorkerSlot | None) -> Spool:
    """This process's spool, SPOOL_MAX_MB shared out between the workers; the first worker
    also takes over the spools of workers that no longer run (WEB_PROCESSES went down)."""
    index, count = (slot.index, slot.count) if slot else (0, 1)
    with spool_errors(settings):
        spool = new_spool(settings, index, count)
        if index == 0:
            for worker, path in spool_files(settings.spool_dir).items():
                if worker >= count:
                    spool.adopt(path)
    return spool


def new_spool(settings: Settings, index: int, count: int) -> Spool:
    from appliance.pipeline.producer.spool import Spool
    return Spool(settings.spool_dir, int(settings.spool_max_mb * 1024 * 1024 / count), index)


@contextlib.contextmanager
def spool_errors(settings: Settings) -> Iterator[None]:
    try:
        yield
    except Exception as exc:  # sqlite3.Error or OSError: either way the spool is unusable
        raise StartupError(f"SPOOL_DIR={settings.spool_dir}: cannot open the spool: {exc}") from None


def worker_spool_depth(settings: Settings, index: int) -> int:
    try:
        return read_one(spool_file(settings.spool_dir, index)).depth
    except Exception:  # unreadable: nothing known to be waiting there
        return 0


def run_api(settings: Settings) -> int:
    """The API: one process, or (WEB_PROCESSES > 1) the parent of its workers, or one worker."""
    from appliance.api.main import serve
    slot = WorkerSlot.from_environment()
    if slot is None:
        yield_to_the_consumer(settings)  # workers inherit it
        if settings.api_processes > 1:
            return process.run(settings, "api", lambda runtime: run_workers(runtime, settings))
    else:
        slot.die_with_parent()
    return process.run(settings, "api",
                       lambda runtime: serve(runtime, settings, build_sink(settings, slot), slot),
                       pod_ip=host_info(settings).pod_ip)


# With every core busy, the API accepted requests faster than the consumer could persist them:
# whole appliance under wrk on 2 cores, nice 0: 3,614 req/s, 2,543 persisted/s, event -> row
# p99 3.3 s and growing (the spool would fill); nice 5: 3,294 req/s, 3,242 persisted/s, p99
# 261 ms (nice 2: p99 3.0 s; nice 3: 0.8 s; nice 10: no better than 5). A lower priority changes
# nothing while a core is free.
API_NICENESS = 5


def yield_to_the_consumer(settings: Settings) -> None:
    """When this appliance also runs the consumer, persisting what was accepted comes first."""
    if "consumer" in settings.programs:
        os.nice(API_NICENESS)


def run_workers(runtime: process.Runtime, settings: Settings) -> int:
    """The parent of the API workers: what every worker would refuse is refused once, here."""
    from appliance.api.guards import ensure_fd_limit
    from appliance.api.main import listen
    from appliance.api.workers import Workers
    ensure_fd_limit(settings.connection_limit)  # the workers inherit the raised limit
    sock = listen(settings)
    if settings.kafka_enabled:
        with spool_errors(settings):
            new_spool(settings, 0, settings.api_processes).close()
        check_producer_config(settings)
    return Workers(settings, sock, settings.api_processes).run(runtime)


def check_producer_config(settings: Settings) -> None:
    """librdkafka checks its properties when a client is made: make one and drop it at once."""
    from confluent_kafka import Producer

    from appliance.pipeline.producer.sink import producer_config
    with checked_client_config():
        Producer({**producer_config(settings), "log_level": 0})


def run_consumer(settings: Settings) -> int:
    from appliance.pipeline.consumer.main import consume
    return process.run(settings, "consumer", lambda runtime: consume(runtime, settings))


def run_agent(settings: Settings) -> int:
    from appliance.agent.main import watch
    return process.run(settings, "agent", lambda runtime: watch(runtime, settings))

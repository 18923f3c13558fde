"""Every series the appliance exports, and the one hook per event that writes them (faust's
sensors): the modules say what happened (``on_batch_persisted(...)``), and only this module
knows which series that moves. The machinery behind them is core/metrics.py.
"""

from __future__ import annotations

import collections
import logging
import os
import resource
import threading
import time
from typing import Any, Iterable, Mapping

from appliance.core import metrics
from appliance.core.metrics import Series

log = logging.getLogger("appliance.metrics")

DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
RESOURCE_INTERVAL = 5.0  # seconds between process CPU/memory samples
STATE_VALUES = {"UP": 1.0, "DEGRADED": 0.5, "DOWN": 0.0}  # DISABLED components get no series
LIVEMAX, LIVESUM = {"multiprocess_mode": "livemax"}, {"multiprocess_mode": "livesum"}


class AllSeries:
    """The series, by attribute; each is a no-op until metrics are initialised."""

    http_requests = Series("counter", "http_requests_total", "HTTP requests handled",
                           ("method", "route", "status"))
    http_duration = Series("histogram", "http_request_duration_seconds",
                           "HTTP request duration by route", ("method", "route"),
                           buckets=DURATION_BUCKETS)
    header_timeouts = Series("counter", "http_request_header_timeouts_total",
                             "Connections closed with a 408 because their request headers, or "
                             "its body, did not arrive in time")
    accept_errors = Series("counter", "http_accept_errors_total",
                           "Connections not accepted for lack of file descriptors")
    rate_limited = Series("counter", "http_rate_limited_total",
                          "Requests answered 429: over RATE_LIMIT_WRITES or RATE_LIMIT_READS",
                          ("route",))
    faults_injected = Series("counter", "faults_injected_total",
                             "Requests answered with an injected fault (FAULT_*, POST /faults)",
                             ("kind",))
    dead_letters_replayed = Series("counter", "dead_letters_replayed_total",
                                   "Dead letters sent again through the spool")
    connections_closed = Series("counter", "http_connections_closed_total",
                                "Connections the server closed: idle keep-alive, or the one idle "
                                "the longest to make room at the connection limit", ("reason",))
    # Every process has this gauge at 0 (unlabelled gauges exist from the start), so it can only
    # be a max: with several API processes, 1 while one of them does (/kafka/status says which).
    kafka_up = Series("gauge", "kafka_up", "1 while the API's producer reaches the broker",
                      **LIVEMAX)
    produced = Series("counter", "kafka_events_produced_total", "Events handed to Kafka, by outcome",
                      ("event_type", "result"))
    queue_length = Series("gauge", "kafka_producer_queue_length", "Messages in librdkafka's queue",
                          **LIVESUM)
    unconfirmed = Series("gauge", "kafka_events_unconfirmed",  # one count per API process
                         "Events the embedded broker holds that the consumer has not persisted",
                         **LIVESUM)
    spool_depth = Series("gauge", "spool_depth",
                         "Events in the spool: waiting, or not yet confirmed", **LIVESUM)
    spool_bytes = Series("gauge", "spool_bytes", "Bytes of the events in the spool", **LIVESUM)
    spool_max_bytes = Series("gauge", "spool_max_bytes",
                             "The spool's bound (SPOOL_MAX_MB, one per API process)", **LIVESUM)
    spool_dropped = Series("counter", "spool_dropped_total",
                           "Events dropped because the spool was full")
    persisted = Series("counter", "consumer_events_persisted_total",
                       "Events written to the database", ("table",))
    batch_duration = Series("histogram", "consumer_batch_duration_seconds",
                            "Time to persist one batch", buckets=DURATION_BUCKETS)
    consumer_lag = Series("gauge", "consumer_lag",
                          "Events in Kafka not yet persisted, per partition", ("partition",),
                          **LIVEMAX)
    db_errors = Series("counter", "consumer_db_errors_total", "Failed database writes (retried)")
    dead_letters = Series("counter", "dead_letters_total", "Messages stored as dead letters")
    pruned = Series("counter", "events_pruned_total",
                    "Rows deleted by retention (RETENTION_DAYS, DB_MAX_MB)", ("table",))
    maintenance_step = Series("histogram", "database_maintenance_step_seconds",
                              "Time one step of retention or vacuum held the database",
                              buckets=DURATION_BUCKETS)
    consumer_stalls = Series("counter", "consumer_stalls_total",
                             "Times the consumer made no progress while events waited")
    disk_free = Series("gauge", "disk_free_bytes",
                       "Space left to the appliance on a filesystem it writes to, per agent probe",
                       ("path",), **LIVEMAX)
    disk_total = Series("gauge", "disk_total_bytes", "Size of that filesystem", ("path",),
                        **LIVEMAX)
    component_up = Series("gauge", "component_up", "1 UP, 0.5 DEGRADED, 0 DOWN, per agent probe",
                          ("component",), **LIVEMAX)
    broker_recycles = Series("counter", "embedded_broker_recycles_total",
                             "Restarts of the embedded broker by the agent", ("reason",))
    broker_rss = Series("gauge", "embedded_broker_resident_memory_bytes",
                        "Embedded broker's memory", **LIVEMAX)
    build_info = Series("gauge", "build_info", "Version of the appliance", ("version",), **LIVEMAX)
    rss = Series("gauge", "process_resident_memory_bytes", "Resident memory per process",
                 ("process",), **LIVESUM)
    cpu = Series("gauge", "process_cpu_seconds", "CPU time used per process", ("process",),
                 **LIVESUM)
    librdkafka_log_suppressed = Series("counter", "librdkafka_log_lines_suppressed_total",
                                       "librdkafka log lines held back by the rate limit")


SERIES = AllSeries()


def start(process: str, version: str) -> None:
    """Make every series now (so the unlabelled ones are exported from the start, at 0), note
    the build, and sample this process's CPU and memory from a thread of its own."""
    try:
        for name, value in vars(AllSeries).items():
            if isinstance(value, Series):
                getattr(SERIES, name)
        SERIES.build_info.labels(version=version).set(1)
    except Exception as exc:  # metrics are an aid: a series that cannot be made must not stop us
        log.warning("metrics disabled", extra={"error": repr(exc)})
        metrics.disable()
        return
    threading.Thread(target=_sample_resources, args=(process,), name="metrics-resources",
                     daemon=True).start()


def _sample_resources(process: str) -> None:
    while True:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        SERIES.cpu.labels(process=process).set(usage.ru_utime + usage.ru_stime)
        SERIES.rss.labels(process=process).set(_rss_bytes())
        time.sleep(RESOURCE_INTERVAL)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


# --- the API ---------------------------------------------------------------------------------


def on_request(method: str, route: str, status: str, seconds: float) -> None:
    SERIES.http_requests.labels(method, route, status).inc()
    SERIES.http_duration.labels(method, route).observe(seconds)


def on_header_timeouts(connections: int) -> None:
    SERIES.header_timeouts.inc(connections)


def on_fault_injected(kind: str) -> None:
    SERIES.faults_injected.labels(kind=kind).inc()


def on_dead_letters_replayed(count: int) -> None:
    SERIES.dead_letters_replayed.inc(count)


def on_accept_error() -> None:
    SERIES.accept_errors.inc()


def on_rate_limited(route: str) -> None:
    SERIES.rate_limited.labels(route=route).inc()


def on_idle_closed(connections: int) -> None:
    SERIES.connections_closed.labels(reason="idle").inc(connections)


def on_connection_evicted() -> None:
    SERIES.connections_closed.labels(reason="evicted").inc()


# --- the producer side -------------------------------------------------------------------------


def on_kafka_state(up: bool) -> None:
    SERIES.kafka_up.set(1 if up else 0)


def on_events_produced(counts: Mapping[tuple[str, str], int]) -> None:
    """Events by (event type label, outcome): handed over (queued, spooled), reported
    (delivered, failed) or lost."""
    for (kind, outcome), count in counts.items():
        SERIES.produced.labels(kind, outcome).inc(count)


def on_events_lost(kinds: Iterable[str]) -> None:
    on_events_produced(collections.Counter((kind, "lost") for kind in kinds))


def on_spool_dropped(events: int) -> None:
    SERIES.spool_dropped.inc(events)


def on_producer_levels(in_queue: int, spool_depth: int, unconfirmed: int,
                       spool_bytes: int = 0, spool_max_bytes: int = 0) -> None:
    SERIES.queue_length.set(in_queue)
    SERIES.spool_depth.set(spool_depth)
    SERIES.unconfirmed.set(unconfirmed)
    SERIES.spool_bytes.set(spool_bytes)
    SERIES.spool_max_bytes.set(spool_max_bytes)


def on_librdkafka_line_suppressed() -> None:
    SERIES.librdkafka_log_suppressed.inc()


# --- the consumer ------------------------------------------------------------------------------


def on_event_tables(tables: Iterable[str]) -> None:
    """The consumer writes these tables: export 0 rows persisted, not "absent"."""
    for table in tables:
        SERIES.persisted.labels(table=table)


def on_retention_tables(tables: Iterable[str]) -> None:
    """Retention prunes these tables: export 0 rows pruned, not "absent"."""
    for table in tables:
        SERIES.pruned.labels(table=table)


def on_batch_persisted(rows: Mapping[str, int], dead_letters: int, seconds: float) -> None:
    SERIES.batch_duration.observe(seconds)
    for table, count in rows.items():
        SERIES.persisted.labels(table=table).inc(count)
    if dead_letters:
        SERIES.dead_letters.inc(dead_letters)


def on_database_error() -> None:
    SERIES.db_errors.inc()


def on_consumer_stalled() -> None:
    SERIES.consumer_stalls.inc()


def on_rows_pruned(table: str, rows: int) -> None:
    SERIES.pruned.labels(table=table).inc(rows)


def on_maintenance_step(seconds: float) -> None:
    SERIES.maintenance_step.observe(seconds)


# --- the agent ---------------------------------------------------------------------------------


def on_probe_round(results: Mapping[str, tuple[str, str, dict[str, Any]]]) -> None:
    """One round of the agent's probes: each component's state, the lag per partition, the free
    space, the embedded broker's memory."""
    for name, (state, _, data) in results.items():
        if state in STATE_VALUES:
            SERIES.component_up.labels(component=name).set(STATE_VALUES[state])
        if name == "kafka":
            for partition, lag in data.get("lag", {}).items():
                SERIES.consumer_lag.labels(partition=partition).set(lag)
        if name == "disk":
            for fs in data.get("filesystems", []):
                if "free_mb" in fs:
                    SERIES.disk_free.labels(path=fs["path"]).set(fs["free_mb"] * 2**20)
                    SERIES.disk_total.labels(path=fs["path"]).set(fs["total_mb"] * 2**20)
        if name == "process.broker" and "rss_mb" in data:
            SERIES.broker_rss.set(data["rss_mb"] * 1024 * 1024)


def on_broker_recycler(reasons: Iterable[str]) -> None:
    """The recycler's counters exist at 0 from the start: an alert on their increase has a
    series to look at before the first recycle."""
    for reason in reasons:
        SERIES.broker_recycles.labels(reason=reason)


def on_broker_recycled(reason: str) -> None:
    SERIES.broker_recycles.labels(reason=reason).inc()

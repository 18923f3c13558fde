"""Prometheus metrics shared by every process of the appliance.

prometheus_client's multiprocess mode: each process (API, consumer, agent) writes its samples to
memory-mapped files in METRICS_DIR; the API's /metrics merges them all. It was chosen over
per-process endpoints because one scrape target then covers the whole appliance, and over a
push from each process because the files survive a process restart (counters keep counting).
`up` empties METRICS_DIR before supervisord starts the programs.

Until ``init()`` runs (in-process unit tests, or when the machinery fails) every metric is a
no-op, so nothing else in the appliance depends on metrics working.
"""

from __future__ import annotations

import logging
import os
import resource
import threading
import time
from pathlib import Path

from appliance.core import metrics_storage

log = logging.getLogger("appliance.metrics")
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
RESOURCE_INTERVAL = 5.0  # seconds between process CPU/memory samples


# (attribute, kind, name, help, labels, options): every series the appliance exports.
SERIES = (
    ("http_requests", "counter", "http_requests_total", "HTTP requests handled",
     ("method", "route", "status"), {}),
    ("http_duration", "histogram", "http_request_duration_seconds", "HTTP request duration by route",
     ("method", "route"), {"buckets": DURATION_BUCKETS}),
    # Every process has this gauge at 0 (unlabelled gauges exist from the start), so it can only
    # be a max: with several API processes, 1 while one of them does (/kafka/status says which).
    ("kafka_up", "gauge", "kafka_up", "1 while the API's producer reaches the broker", (),
     {"multiprocess_mode": "livemax"}),
    ("header_timeouts", "counter", "http_request_header_timeouts_total",
     "Connections closed because their request headers did not arrive in time", (), {}),
    ("accept_errors", "counter", "http_accept_errors_total",
     "Connections not accepted for lack of file descriptors", (), {}),
    ("produced", "counter", "kafka_events_produced_total", "Events handed to Kafka, by outcome",
     ("event_type", "result"), {}),
    ("queue_length", "gauge", "kafka_producer_queue_length", "Messages in librdkafka's queue", (),
     {"multiprocess_mode": "livesum"}),
    ("unconfirmed", "gauge", "kafka_events_unconfirmed",
     "Events the embedded broker holds that the consumer has not persisted", (),
     {"multiprocess_mode": "livesum"}),  # one count per API process
    ("spool_depth", "gauge", "spool_depth", "Events in the spool: waiting, or not yet confirmed", (),
     {"multiprocess_mode": "livesum"}),
    ("spool_dropped", "counter", "spool_dropped_total", "Events dropped because the spool was full",
     (), {}),
    ("persisted", "counter", "consumer_events_persisted_total", "Events written to the database",
     ("table",), {}),
    ("batch_duration", "histogram", "consumer_batch_duration_seconds", "Time to persist one batch",
     (), {"buckets": DURATION_BUCKETS}),
    ("consumer_lag", "gauge", "consumer_lag", "Events in Kafka not yet persisted, per partition",
     ("partition",), {"multiprocess_mode": "livemax"}),
    ("db_errors", "counter", "consumer_db_errors_total", "Failed database writes (retried)", (), {}),
    ("dead_letters", "counter", "dead_letters_total", "Messages stored as dead letters", (), {}),
    ("pruned", "counter", "events_pruned_total",
     "Rows deleted by retention (RETENTION_DAYS, DB_MAX_MB)", ("table",), {}),
    ("maintenance_step", "histogram", "database_maintenance_step_seconds",
     "Time one step of retention or vacuum held the database", (), {"buckets": DURATION_BUCKETS}),
    ("consumer_stalls", "counter", "consumer_stalls_total",
     "Times the consumer made no progress while events waited", (), {}),
    ("component_up", "gauge", "component_up", "1 UP, 0.5 DEGRADED, 0 DOWN, per agent probe",
     ("component",), {"multiprocess_mode": "livemax"}),
    ("broker_recycles", "counter", "embedded_broker_recycles_total",
     "Restarts of the embedded broker by the agent", ("reason",), {}),
    ("broker_rss", "gauge", "embedded_broker_resident_memory_bytes", "Embedded broker's memory", (),
     {"multiprocess_mode": "livemax"}),
    ("build_info", "gauge", "build_info", "Version of the appliance", ("version",),
     {"multiprocess_mode": "livemax"}),
    ("rss", "gauge", "process_resident_memory_bytes", "Resident memory per process", ("process",),
     {"multiprocess_mode": "livesum"}),
    ("cpu", "gauge", "process_cpu_seconds", "CPU time used per process", ("process",),
     {"multiprocess_mode": "livesum"}),
    ("librdkafka_log_suppressed", "counter", "librdkafka_log_lines_suppressed_total",
     "librdkafka log lines held back by the rate limit", (), {}),
)


class _NoOp:
    def labels(self, *args, **kwargs) -> "_NoOp":
        return self

    def inc(self, *args, **kwargs) -> None: ...
    def dec(self, *args, **kwargs) -> None: ...
    def set(self, *args, **kwargs) -> None: ...
    def observe(self, *args, **kwargs) -> None: ...


class _CachedChildren:
    """A labelled metric whose children are kept per label values: ``labels()`` is one dict
    lookup instead of prometheus_client's validation, lock and lookup (six label lookups per
    request: ~2 % of the API's CPU). Label values are bounded by design (routes, methods,
    statuses, event types), so the cache is too."""

    __slots__ = ("metric", "_children")

    def __init__(self, metric) -> None:
        self.metric = metric
        self._children: dict = {}

    def labels(self, *values, **named):
        key = (values, tuple(named.items())) if named else values
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.metric.labels(*values, **named)
        return child

    def __getattr__(self, name: str):  # anything else, as the metric itself
        return getattr(self.metric, name)


class Metrics:
    """Attribute access to every metric; all no-ops until ``init``."""

    def __init__(self) -> None:
        self.enabled = False
        self.directory: Path | None = None
        for attribute, *_ in SERIES:
            setattr(self, attribute, _NoOp())


M = Metrics()


def init(directory: Path, process: str, version: str) -> bool:
    """Switch to multiprocess mode in ``directory`` and create the metrics; False on failure."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
        metrics_storage.install()  # even if prometheus_client was imported before
        _create(process, version)
    except Exception as exc:  # metrics are an aid: a broken METRICS_DIR must not stop serving
        log.warning("metrics disabled", extra={"error": repr(exc), "metrics_dir": str(directory)})
        return False
    M.enabled, M.directory = True, directory
    _start_resource_sampler(process)
    return True


def _create(process: str, version: str) -> None:
    import prometheus_client as pc

    kinds = {"counter": pc.Counter, "gauge": pc.Gauge, "histogram": pc.Histogram}
    for attribute, kind, name, help_text, labels, options in SERIES:
        # registry=None: in multiprocess mode the samples live in files that
        # MultiProcessCollector reads; registering here too would clash with the default
        # process collector's names.
        metric = kinds[kind](name, help_text, list(labels), registry=None, **options)
        setattr(M, attribute, _CachedChildren(metric) if labels else metric)
    M.build_info.labels(version=version).set(1)


def _start_resource_sampler(process: str) -> None:
    def sample() -> None:
        while True:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            M.cpu.labels(process=process).set(usage.ru_utime + usage.ru_stime)
            M.rss.labels(process=process).set(_rss_bytes())
            time.sleep(RESOURCE_INTERVAL)

    threading.Thread(target=sample, name="metrics-resources", daemon=True).start()


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def mark_dead(pid: int) -> None:
    """Drop a dead process's live gauges (its counters keep counting toward the totals)."""
    if M.enabled:
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(pid, str(M.directory))


def exposition(accept: str | None) -> tuple[bytes, str]:
    """The merged samples of every process, in the format the scraper asked for."""
    from prometheus_client import CollectorRegistry, multiprocess
    from prometheus_client.exposition import choose_encoder

    if not M.enabled:
        raise RuntimeError("metrics are not initialised in this process")
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(M.directory))
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


def component_value(state: str) -> float | None:
    return {"UP": 1.0, "DEGRADED": 0.5, "DOWN": 0.0}.get(state)


"""The metrics machinery shared by every process of the appliance (the series and the hooks
that write them are core/sensors.py).

prometheus_client's multiprocess mode: each process (API, consumer, agent) writes its samples to
memory-mapped files in METRICS_DIR; the API's /metrics merges them all. It was chosen over
per-process endpoints because one scrape target then covers the whole appliance, and over a
push from each process because the files survive a process restart (counters keep counting).
`up` empties METRICS_DIR before supervisord starts the programs.

Until ``init()`` runs (in-process unit tests, or when the machinery fails) every series is a
no-op, so nothing else in the appliance depends on metrics working.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from appliance.core import metrics_storage

log = logging.getLogger("appliance.metrics")
_directory: Path | None = None  # set by init: metrics are on


def init(directory: Path) -> bool:
    """Switch to multiprocess mode in ``directory``; False (metrics stay off) on failure."""
    global _directory
    try:
        directory.mkdir(parents=True, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)  # prometheus_client reads it
        metrics_storage.install()  # even if prometheus_client was imported before
    except Exception as exc:  # metrics are an aid: a broken METRICS_DIR must not stop serving
        log.warning("metrics disabled", extra={"error": repr(exc), "metrics_dir": str(directory)})
        return False
    _directory = directory
    return True


def enabled() -> bool:
    return _directory is not None


def disable() -> None:
    """Back to no-ops (a series could not be made after all)."""
    global _directory
    _directory = None


class _NoOp:
    def labels(self, *args, **kwargs) -> "_NoOp":
        return self

    def inc(self, *args, **kwargs) -> None: ...
    def dec(self, *args, **kwargs) -> None: ...
    def set(self, *args, **kwargs) -> None: ...
    def observe(self, *args, **kwargs) -> None: ...


NOOP = _NoOp()


class CachedChildren:
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


class Series:
    """One series, declared as a class attribute of the sensors' series (core/sensors.py).

    A no-op until ``init``; afterwards the metric is made on first use and put on the instance,
    so every later use is a plain attribute read."""

    _lock = threading.Lock()

    def __init__(self, kind: str, name: str, help_text: str, labels: tuple[str, ...] = (),
                 **options: Any) -> None:
        self.kind, self.name, self.help, self.labels, self.options = (
            kind, name, help_text, labels, options)
        self.attribute = ""

    def __set_name__(self, owner: type, attribute: str) -> None:
        self.attribute = attribute

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        if _directory is None:
            return NOOP
        with Series._lock:
            made = instance.__dict__.get(self.attribute)
            if made is None:
                made = instance.__dict__[self.attribute] = self._make()
        return made

    def _make(self) -> Any:
        import prometheus_client as pc

        kinds = {"counter": pc.Counter, "gauge": pc.Gauge, "histogram": pc.Histogram}
        # registry=None: in multiprocess mode the samples live in files that
        # MultiProcessCollector reads; registering here too would clash with the default
        # process collector's names.
        metric = kinds[self.kind](self.name, self.help, list(self.labels), registry=None,
                                  **self.options)
        return CachedChildren(metric) if self.labels else metric


def mark_dead(pid: int) -> None:
    """Drop a dead process's live gauges (its counters keep counting toward the totals)."""
    if _directory is not None:
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(pid, str(_directory))


def exposition(accept: str | None) -> tuple[bytes, str]:
    """The merged samples of every process, in the format the scraper asked for."""
    from prometheus_client import CollectorRegistry, multiprocess
    from prometheus_client.exposition import choose_encoder

    if _directory is None:
        raise RuntimeError("metrics are not initialised in this process")
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(_directory))
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type

"""JSON logging: one object per line on stdout, for people and for log shippers alike."""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import sys
import threading
import time
from typing import Any, Callable

from opentelemetry import trace

from appliance.core import jsontext
from appliance.core.timefmt import second_text

# Attributes every LogRecord has; anything else passed through ``extra=`` becomes a JSON field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": f"{second_text(int(record.created))}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        return _line(entry, record.exc_info and self.formatException(record.exc_info))


def _line(entry: dict[str, Any], exception: str | None = None) -> str:
    if "trace_id" not in entry:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            entry["trace_id"] = format(context.trace_id, "032x")
    if exception:
        entry["exception"] = exception
    return jsontext.dumps_text(entry, default=str)


class _Line:
    """A line made by ``write`` without a LogRecord; the output handler writes it as it is."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def getMessage(self) -> str:  # noqa: N802 (logging's name)
        return self.text


def write(logger: logging.Logger, level: int, message: str, fields: dict[str, Any]) -> None:
    """``logger.log(level, message, extra=fields)``: the same JSON line, made without the
    logging machinery (a LogRecord, its copy in QueueHandler.prepare, the handler's lock:
    ~25 % of the API's CPU per request with an access line each) whenever the JSON handler of
    ``configure`` is the only one that would see it. Otherwise (a test's handler, a filter on
    the way) through ``logging``."""
    handler = _handler
    if handler is None or not _only_ours(logger, handler):
        logger.log(level, message, extra=fields)
        return
    if not logger.isEnabledFor(level):
        return
    now = time.time()
    entry = {"time": f"{second_text(int(now))}.{int((now - int(now)) * 1000):03d}Z",
             "level": _LEVEL_NAMES.get(level) or logging.getLevelName(level).lower(),
             "logger": logger.name, "message": message}
    entry.update(fields)
    handler.enqueue(_Line(_line(entry)))  # type: ignore[arg-type]


_LEVEL_NAMES = {level: logging.getLevelName(level).lower()
                for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR,
                              logging.CRITICAL)}


def _only_ours(logger: logging.Logger, handler: logging.Handler) -> bool:
    """What ``logging`` would do with a record of ``logger`` is: hand it to ``handler`` alone."""
    if logger.disabled or logger.filters or handler.filters or handler.level:
        return False
    current: logging.Logger | None = logger
    while current is not None and current is not logging.root:
        if current.handlers or not current.propagate:
            return False
        current = current.parent
    handlers = logging.root.handlers
    return len(handlers) == 1 and handlers[0] is handler


class _FormattedLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage()  # the JSON line QueueHandler.prepare already made


_listener: logging.handlers.QueueListener | None = None
_handler: "BoundedQueueHandler | None" = None  # the one ``configure`` installed on the root
MAX_QUEUED_LINES = 100_000  # if stdout blocks, memory stays bounded; the excess is counted


class BoundedQueueHandler(logging.handlers.QueueHandler):
    def __init__(self, records: queue.Queue) -> None:
        super().__init__(records)
        self.dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:  # the reader of stdout is stuck: drop, never block a request
            self.dropped += 1


def configure(level: str, stream=None) -> None:
    """Route every logger (ours, waitress, librdkafka's via our adapter) through one JSON handler.

    Records are formatted in the calling thread (so the current trace id is right) and written
    by one listener thread: measured with 8 Waitress threads each writing its own access line,
    contention on the handler's lock cut GET / from ~2,100 to ~500 req/s."""
    global _listener, _handler
    if _listener is not None:
        _listener.stop()
    output = logging.StreamHandler(stream or sys.stdout)
    output.setFormatter(_FormattedLine())
    records: queue.Queue = queue.Queue(MAX_QUEUED_LINES)
    handler = BoundedQueueHandler(records)
    handler.setFormatter(JsonFormatter())
    _listener = logging.handlers.QueueListener(records, output)
    _listener.start()
    atexit.register(flush)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    _handler = handler


def flush() -> None:
    """Write every queued line (at exit, and before a process reports it stopped)."""
    global _listener
    if _listener is not None:
        _listener.stop()
        _listener = None


class ThrottledLogger:
    """Stands in for a logger that some library calls once per event under load: at most one
    call per ``interval`` reaches the logger, the others are dropped before a LogRecord is
    made (a filter only sees a record once it exists) and counted in ``suppressed``."""

    def __init__(self, logger: logging.Logger, interval: float) -> None:
        self.logger, self.interval = logger, interval
        self.suppressed = 0
        self._next = 0.0

    def warning(self, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now < self._next:  # unlocked: at worst two threads both pass at the same moment
            self.suppressed += 1
            return
        self._next = now + self.interval
        self.logger.warning(msg, *args)


class RateLimitFilter(logging.Filter):
    """Let one line per (logger, message template, first argument) through per ``interval``.

    The first argument tells librdkafka's facilities apart ("%s [%s] %s" % (fac, ...)); the
    template groups "Task queue depth is %d" whatever the depth."""

    def __init__(self, interval: float, on_suppress: Callable[[], None] = lambda: None) -> None:
        super().__init__()
        self.interval = interval
        self.on_suppress = on_suppress
        self.suppressed = 0
        self._last: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        # A template that starts with its argument ("%s [%s] %s") is told apart by it.
        first = (str(record.args[0]) if str(record.msg).startswith("%s")
                 and isinstance(record.args, tuple) and record.args else "")
        key = (record.name, str(record.msg)[:120], first[:60])
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -1e9) < self.interval:
                self.suppressed += 1
                self.on_suppress()
                return False
            self._last[key] = now
            if len(self._last) > 1000:  # bounded memory for varied messages
                self._last.clear()
        record.suppressed_total = self.suppressed
        return True

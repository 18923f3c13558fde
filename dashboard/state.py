"""What the dashboard knows: one poll's answers (Reading) folded into the state the screens draw.

``gather`` runs in a worker thread and never raises; ``DashboardState.apply`` runs on the UI
thread and tolerates any shape of JSON the appliance might send.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from .client import REQUEST_ID_PREFIX, ApplianceClient, ApplianceError
from .metrics import (
    STATUS_FIGURES,
    Scrape,
    Series,
    parse_iso,
    parse_scrape,
    rates,
    recent_mean,
)

EVENTS_LIMIT = 100  # newest events asked for per poll
MAX_EVENTS = 5000  # events kept in memory; the oldest go first
MAX_RETRY = 30.0  # seconds: the longest wait between two attempts while the appliance fails
STALE_AFTER = 60.0  # seconds: a figure's newest point older than this is no current value

# (figure, label, unit) in the order the figures panel shows them
FIGURES = (("requests", "req/s", "/s"), ("errors", "5xx", "%"), ("p95", "p95", "ms"),
           ("persisted", "persisted", "/s"), ("lag", "lag", ""), ("spool", "spool", ""))
METRICS_ONLY = ("requests", "errors", "p95")  # n/a without /metrics
# Figures whose every point sums up the interval since the point before (a rate, a share, a
# p95). Polled every second, they jump between 0 and 1/s for a request every few seconds (the
# status agent's /healthz every 5 s): their sparkline shows each slice's mean and their value
# the mean of the last RECENT seconds, so both say 0.2/s. Lag and spool are samples of a level:
# a slice shows its largest, the value is the newest.
INTERVAL_FIGURES = frozenset({"requests", "errors", "p95", "persisted"})
RECENT = 10.0  # seconds: the value of an interval figure is the mean of its points this recent


@dataclass
class Reading:
    """The answers of one poll; an endpoint that failed is in ``problems`` instead."""

    at: float
    status: dict[str, Any] | None = None
    version: dict[str, Any] | None = None
    events: list[dict[str, Any]] | None = None
    metrics: str | None = None
    metrics_missing: bool = False  # /metrics answered 404
    sent_before_metrics: int = 0  # the client's request count just before it asked /metrics
    problems: dict[str, ApplianceError] = field(default_factory=dict)

    @property
    def failure(self) -> ApplianceError | None:
        """Why there is no /status in this reading (a 401 still is an answer: reads are open)."""
        problem = self.problems.get("status")
        return problem if problem is not None and problem.kind != ApplianceError.UNAUTHORIZED else None


def _call(reading: Reading, name: str, request: Callable[[], Any]) -> Any:
    try:
        return request()
    except ApplianceError as exc:
        reading.problems[name] = exc
    except Exception as exc:  # a client bug must become a banner, not a dead worker
        reading.problems[name] = ApplianceError(ApplianceError.MALFORMED, f"{name}: {exc!r}")
    return None


def gather(client: ApplianceClient, at: float, *, history_minutes: int, want_version: bool,
           history_since: str | None = None, events_limit: int = EVENTS_LIMIT) -> Reading:
    """Ask the appliance everything one refresh needs. Blocking: call it from a worker thread."""
    reading = Reading(at=at)
    reading.status = _call(reading, "status", lambda: client.status(history_minutes, history_since))
    if reading.failure is not None and reading.failure.kind == ApplianceError.UNREACHABLE:
        return reading  # one timeout is enough: the other endpoints would fail the same way
    if want_version:
        reading.version = _call(reading, "version", client.version)
    answer = _call(reading, "events", lambda: client.events(events_limit))
    if answer is not None:
        events = answer.get("events")
        if isinstance(events, list):
            reading.events = [e for e in events if isinstance(e, dict)]
        else:
            reading.problems["events"] = ApplianceError(ApplianceError.MALFORMED,
                                                        "GET /events: no list of events")
    reading.sent_before_metrics = getattr(client, "sent", 0)
    reading.metrics = _call(reading, "metrics", client.metrics)
    reading.metrics_missing = reading.metrics is None and "metrics" not in reading.problems
    return reading


def event_key(event: dict[str, Any]) -> str:
    """event_id; dead letters have none, their dedup_key is as unique."""
    key = event.get("event_id") or event.get("dedup_key")
    if key:
        return str(key)
    return json.dumps(event, sort_keys=True, default=str)


def mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class DashboardState:
    """Everything known so far, fed one Reading at a time."""

    def __init__(self, url: str, interval: float, history_minutes: int) -> None:
        self.url = url
        self.interval = interval
        self.history_minutes = history_minutes
        window = history_minutes * 60.0
        self.metric_series = {name: Series(window) for name, _, _ in FIGURES}
        self.status_series = {name: Series(window) for name in ("lag", "spool", "rows", "persisted")}
        self.status: dict[str, Any] = {}
        self.version: dict[str, Any] = {}
        self.events: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.problems: dict[str, str] = {}
        self.failure: ApplianceError | None = None  # why the last poll got no /status
        self.failures = 0  # consecutive polls without /status
        self.connected = False
        self.last_refresh: float | None = None
        self.metrics_state = "unknown"  # "ok", "missing" (404) or "failing"
        # The time of the newest history round we have, as the appliance wrote it: the next
        # /status asks only for the rounds after it (the first asks for all history_minutes).
        self.history_since: str | None = None
        self._own_keys: OrderedDict[str, None] = OrderedDict()  # events of our own polls
        self._last_scrape: Scrape | None = None
        self._last_sent = 0

    # --- what the next poll should ask ---------------------------------------------------

    @property
    def wants_history(self) -> tuple[int, str | None]:
        """(minutes, since) for /status?history=&since=: every poll gets the rounds it lacks,
        after a reconnection too, and never the whole window again."""
        return self.history_minutes, self.history_since

    @property
    def wants_version(self) -> bool:
        return not self.version

    def retry_delay(self) -> float:
        """interval while all is well; doubling per failed attempt up to MAX_RETRY."""
        if not self.failures:
            return self.interval
        return min(self.interval * 2 ** (self.failures - 1), max(self.interval, MAX_RETRY))

    # --- folding a reading in ------------------------------------------------------------

    def apply(self, reading: Reading) -> tuple[list[dict[str, Any]], str | None]:
        """Fold in one poll; returns (new events oldest first, "lost"/"recovered"/None)."""
        transition = self._apply_connection(reading)
        self.problems = {name: exc.reason for name, exc in reading.problems.items()
                         if name != "status" or reading.failure is None}
        if reading.status is not None:
            self._apply_status(reading.status)
        if reading.version is not None:
            self.version = reading.version
        self._apply_metrics(reading)
        return self._apply_events(reading.events or []), transition

    def _apply_connection(self, reading: Reading) -> str | None:
        failure = reading.failure
        if failure is not None:
            self.failure = failure
            self.failures += 1
            was, self.connected = self.connected, False
            self.version = {} if failure.kind == ApplianceError.UNREACHABLE else self.version
            self._last_scrape = None
            return "lost" if was else None
        self.failure, self.failures, self.last_refresh = None, 0, reading.at
        was, self.connected = self.connected, True
        # Not connected but with a status from before: this success is a reconnection.
        return "recovered" if not was and self.status else None

    def _apply_status(self, status: dict[str, Any]) -> None:
        history = status.get("history")
        if isinstance(history, dict):
            self._apply_history(history)
        self.status = status
        for name, entry in mapping(status.get("components")).items():
            entry = mapping(entry)
            self._add_status_point(name, parse_iso(entry.get("checked_at")), mapping(entry.get("data")))

    def _apply_history(self, history: dict[str, Any]) -> None:
        newest = parse_iso(self.history_since)
        for name, rows in history.items():
            for row in rows if isinstance(rows, list) else []:
                if isinstance(row, list) and len(row) == 3:
                    at = parse_iso(row[0])
                    self._add_status_point(name, at, mapping(row[2]))
                    if at is not None and (newest is None or at > newest):
                        newest, self.history_since = at, row[0]

    def _add_status_point(self, component: str, at: float | None, data: dict[str, Any]) -> None:
        if at is None:
            return
        for figure, (source, read) in STATUS_FIGURES.items():
            if source != component:
                continue
            value = read(data)
            series = self.status_series[figure]
            if figure == "rows" and value is not None and series.points and at > series.points[-1][0]:
                last_at, last_rows = series.points[-1]
                if value >= last_rows:  # a smaller count: the database was recreated
                    self.status_series["persisted"].add(at, (value - last_rows) / (at - last_at))
            series.add(at, value)

    def _apply_metrics(self, reading: Reading) -> None:
        if reading.metrics_missing:
            self.metrics_state, self._last_scrape = "missing", None
            return
        if reading.metrics is None:
            if reading.problems.get("metrics") is not None:
                self.metrics_state = "failing"
            return
        try:
            scrape = parse_scrape(reading.metrics, reading.at)
        except ValueError as exc:
            self.metrics_state, self._last_scrape = "failing", None
            self.problems["metrics"] = f"GET /metrics: not Prometheus text ({exc})"
            return
        self.metrics_state = "ok"
        if self._last_scrape is not None:
            own = reading.sent_before_metrics - self._last_sent
            for name, value in rates(self._last_scrape, scrape, own).items():
                self.metric_series[name].add(scrape.at, value)
        self.metric_series["lag"].add(scrape.at, scrape.lag)
        self.metric_series["spool"].add(scrape.at, scrape.spool)
        self._last_scrape, self._last_sent = scrape, reading.sent_before_metrics

    def _apply_events(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        fresh = []
        for event in events:
            key = event_key(event)
            if key in self.events or key in self._own_keys:
                continue
            if str(event.get("request_id", "")).startswith(REQUEST_ID_PREFIX):
                self._own_keys[key] = None  # our own poll, recorded like any request: not news
            else:
                fresh.append(event)
        fresh.sort(key=lambda e: str(e.get("occurred_at", "")))
        for event in fresh:
            self.events[event_key(event)] = event
        for kept in (self.events, self._own_keys):
            while len(kept) > MAX_EVENTS:
                kept.popitem(last=False)
        return fresh

    @property
    def own_events(self) -> int:
        return len(self._own_keys)

    # --- what the screens draw -----------------------------------------------------------

    def figure(self, name: str, now: float) -> tuple[list[tuple[float, float]], float | None, str]:
        """(points, current value, source) of a figure; source "" means n/a.

        /metrics wins where it has the figure; the /status history fills in the time before
        the first scrape (the dashboard cannot know earlier rates, the agent recorded them).
        The current value is None when the newest point is older than STALE_AFTER (e.g. the
        lag while Kafka is down: the agent records none); for an interval figure it is the mean
        of the points of the RECENT seconds up to the newest."""
        metric = self.metric_series[name]
        status = self.status_series.get(name)
        if self.metrics_state == "ok" and (metric.points or name in METRICS_ONLY):
            points, source = list(metric.points), "/metrics"
            if status is not None and points:
                points = [p for p in status.points if p[0] < points[0][0]] + points
        elif status is not None and status.points:
            points, source = list(status.points), "/status"
        else:
            return [], None, ""
        if not points or now - points[-1][0] > STALE_AFTER:
            return points, None, source
        return points, recent_mean(points, RECENT) if name in INTERVAL_FIGURES else points[-1][1], source

    @property
    def unreachable(self) -> str | None:
        """Why there is no current /status, or None while there is."""
        return None if self.failure is None else self.failure.reason

    @property
    def components(self) -> dict[str, dict[str, Any]]:
        return {name: mapping(entry) for name, entry in mapping(self.status.get("components")).items()}

    @property
    def agent(self) -> dict[str, Any]:
        return mapping(self.status.get("agent"))

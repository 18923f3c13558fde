"""The figures over time: the points of each figure, from successive /metrics scrapes and
the agent's /status history, and the current value the figures panel shows beside its sparkline.
"""

from __future__ import annotations

from typing import Any

from .metrics import STATUS_FIGURES, Scrape, Series, parse_iso, parse_scrape, rates, recent_mean
from .reading import Reading

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


def mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class Figures:
    """The points of every figure over the last ``history_minutes``, fed by each poll."""

    def __init__(self, history_minutes: int) -> None:
        window = history_minutes * 60.0
        self.metric_series = {name: Series(window) for name, _, _ in FIGURES}
        self.status_series = {name: Series(window) for name in ("lag", "spool", "rows", "persisted")}
        self.metrics_state = "unknown"  # "ok", "missing" (404) or "failing"
        # The time of the newest history round we have, as the appliance wrote it: the next
        # /status asks only for the rounds after it (the first asks for all history_minutes).
        self.history_since: str | None = None
        self._last_scrape: Scrape | None = None
        self._last_sent = 0

    # --- from /status ----------------------------------------------------------------------

    def add_status(self, status: dict[str, Any]) -> None:
        """The history rounds of a /status answer, then its components' current data."""
        history = status.get("history")
        if isinstance(history, dict):
            self._add_history(history)
        for name, entry in mapping(status.get("components")).items():
            entry = mapping(entry)
            self._add_status_point(name, parse_iso(entry.get("checked_at")), mapping(entry.get("data")))

    def _add_history(self, history: dict[str, Any]) -> None:
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

    # --- from /metrics ---------------------------------------------------------------------

    def forget_scrape(self) -> None:
        """No rate spans a gap: after a failed poll the next scrape starts afresh."""
        self._last_scrape = None

    def add_metrics(self, reading: Reading) -> str | None:
        """The rates since the last scrape; returns why the text could not be read, if so."""
        if reading.metrics_missing:
            self.metrics_state, self._last_scrape = "missing", None
            return None
        if reading.metrics is None:
            if reading.problems.get("metrics") is not None:
                self.metrics_state = "failing"
            return None
        try:
            scrape = parse_scrape(reading.metrics, reading.at)
        except ValueError as exc:
            self.metrics_state, self._last_scrape = "failing", None
            return f"GET /metrics: not Prometheus text ({exc})"
        self.metrics_state = "ok"
        if self._last_scrape is not None:
            own = reading.sent_before_metrics - self._last_sent
            for name, value in rates(self._last_scrape, scrape, own).items():
                self.metric_series[name].add(scrape.at, value)
        self.metric_series["lag"].add(scrape.at, scrape.lag)
        self.metric_series["spool"].add(scrape.at, scrape.spool)
        self._last_scrape, self._last_sent = scrape, reading.sent_before_metrics
        return None

    # --- what the figures panel draws --------------------------------------------------------

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

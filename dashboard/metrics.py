"""Figures over time: rates from successive /metrics scrapes, or from the /status history.

Pure functions and small containers, no Textual: the screens only ask for the points to draw.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

from prometheus_client.parser import text_string_to_metric_families

QUANTILE = 0.95


@dataclass(frozen=True)
class Scrape:
    """The few sums the dashboard needs from one /metrics answer (None: metric absent)."""

    at: float  # epoch seconds when it was taken
    requests: float | None = None  # sum of http_requests_total
    errors: float | None = None  # the part of it with a 5xx status
    buckets: tuple[tuple[float, float], ...] | None = None  # (le, cumulative count), summed
    persisted: float | None = None  # sum of consumer_events_persisted_total
    lag: float | None = None  # sum of consumer_lag
    spool: float | None = None  # spool_depth


def _add(total: float | None, value: float) -> float:
    return value if total is None else total + value


def parse_scrape(text: str, at: float) -> Scrape:
    """Sum the samples we use; raises ValueError when the text is not Prometheus format."""
    sums: dict[str, float | None] = dict.fromkeys(("requests", "errors", "persisted", "lag", "spool"))
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, float(sample.value)
            if math.isnan(value):
                continue
            if name == "http_requests_total":
                sums["requests"] = _add(sums["requests"], value)
                failed = labels.get("status", "").startswith("5")
                sums["errors"] = _add(sums["errors"], value if failed else 0.0)
            elif name == "http_request_duration_seconds_bucket":
                le = float(labels.get("le", "inf"))
                buckets[le] = buckets.get(le, 0.0) + value
            elif name == "consumer_events_persisted_total":
                sums["persisted"] = _add(sums["persisted"], value)
            elif name == "consumer_lag":
                sums["lag"] = _add(sums["lag"], value)
            elif name == "spool_depth":
                sums["spool"] = _add(sums["spool"], value)
    return Scrape(at=at, buckets=tuple(sorted(buckets.items())) if buckets else None, **sums)


def increase(before: float | None, after: float | None) -> float | None:
    """Counter increase between two scrapes; a smaller value means the process restarted."""
    if before is None or after is None:
        return None
    return after - before if after >= before else after


def quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """histogram_quantile() as Prometheus computes it: linear within the bucket holding rank q."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_le, lower_count = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                return lower_le  # beyond the largest finite bucket: its bound is all we know
            if count == lower_count:
                return le
            return lower_le + (le - lower_le) * (rank - lower_count) / (count - lower_count)
        lower_le, lower_count = le, count
    return lower_le


def rates(before: Scrape, after: Scrape, own_requests: int = 0) -> dict[str, float | None]:
    """requests/s, 5xx share (%), p95 (ms) and persisted/s between two scrapes.

    ``own_requests``: how many of the requests in between were the dashboard's own polls; they
    are left out of requests/s and the 5xx share (an idle appliance shows 0, not our polling).
    The p95 cannot tell them apart and includes them."""
    elapsed = after.at - before.at
    if elapsed <= 0:
        return {}
    requests = increase(before.requests, after.requests)
    if requests is not None:
        requests = max(0.0, requests - own_requests)
    errors = increase(before.errors, after.errors)
    persisted = increase(before.persisted, after.persisted)
    figures: dict[str, float | None] = {
        "requests": None if requests is None else requests / elapsed,
        "errors": (None if requests is None or errors is None
                   else 100.0 * errors / requests if requests else 0.0),
        "persisted": None if persisted is None else persisted / elapsed,
        "p95": None,
    }
    if before.buckets is not None and after.buckets is not None:
        earlier = dict(before.buckets)
        window = [(le, increase(earlier.get(le, 0.0), count) or 0.0) for le, count in after.buckets]
        p95 = quantile(QUANTILE, window)
        figures["p95"] = None if p95 is None else p95 * 1000.0
    return figures


class Series:
    """(time, value) points of one figure, the newest ``window`` seconds of them."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.points: deque[tuple[float, float]] = deque()

    def add(self, at: float, value: float | None) -> None:
        if value is None or (self.points and at <= self.points[-1][0]):
            return  # a repeat of a point we have, or older than it
        self.points.append((at, float(value)))
        while self.points and self.points[0][0] < at - self.window:
            self.points.popleft()

    @property
    def latest(self) -> float | None:
        return self.points[-1][1] if self.points else None

    def clear(self) -> None:
        self.points.clear()


def recent_mean(points: list[tuple[float, float]], seconds: float) -> float | None:
    """The mean of the points of the last ``seconds`` up to the newest one (always included).
    Polls come at a steady interval, so the mean of the points is the mean over that time."""
    if not points:
        return None
    since = points[-1][0] - seconds
    recent = [value for at, value in points if at > since]
    return sum(recent) / len(recent)


def parse_iso(text: Any) -> float | None:
    """Epoch seconds of the appliance's ``2026-02-03T10:30:45.123456Z`` stamps, else None."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def status_lag(data: dict[str, Any]) -> float | None:
    return _number(data.get("lag_total"))


def status_spool(data: dict[str, Any]) -> float | None:
    return _number(data.get("depth"))


def status_rows(data: dict[str, Any]) -> float | None:
    rows = data.get("rows")
    if not isinstance(rows, dict):
        return None
    counts = [_number(v) for v in rows.values()]
    return sum(c for c in counts if c is not None) if counts else None


# figure name -> (component whose data holds it, how to read it)
STATUS_FIGURES = {"lag": ("kafka", status_lag), "spool": ("spool", status_spool),
                  "rows": ("database", status_rows)}

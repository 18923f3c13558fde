"""The statistics of the last hour, from GET /events/stats: what the stats screen draws.

/events/stats is an aggregate the database computes over the hour's rows (tens of ms for an
hour at ~100 req/s), so it is asked for when the stats screen opens and then every
STATS_INTERVAL seconds while it is shown, never on the main screen's polls. ``parse_stats``
tolerates any shape of JSON: what is not as expected is left out, never raised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .client import ApplianceClient, ApplianceError

STATS_INTERVAL = 15.0  # seconds between two /events/stats while the stats screen is shown


@dataclass(frozen=True)
class Entry:
    """One line of a top list: a client address, a route or a proxy chain, and its requests."""

    name: str
    count: int


@dataclass(frozen=True)
class Stats:
    since: str = ""
    until: str = ""
    total: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    by_status_class: dict[str, int] = field(default_factory=dict)
    top_clients: tuple[Entry, ...] = ()
    top_routes: tuple[Entry, ...] = ()
    top_proxy_chains: tuple[Entry, ...] = ()
    duration_ms: dict[str, float | None] = field(default_factory=dict)

    @property
    def responses(self) -> int:
        """HTTP responses in the window: what the counts of the top lists are shares of."""
        return self.by_type.get("http_response") or sum(self.by_status_class.values())


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _counts(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        return {}
    return {str(k): n for k, v in value.items() if (n := _count(v)) is not None}


def _entries(value: Any, name: str) -> tuple[Entry, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(Entry(str(item.get(name)), n) for item in value
                 if isinstance(item, dict) and (n := _count(item.get("count"))) is not None)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _millis(value: Any) -> dict[str, float | None]:
    value = value if isinstance(value, dict) else {}
    return {p: _number(value.get(p)) for p in ("p50", "p95", "p99")}


def parse_stats(document: dict[str, Any]) -> Stats:
    return Stats(
        since=str(document.get("since") or ""), until=str(document.get("until") or ""),
        total=_count(document.get("total")) or 0, by_type=_counts(document.get("by_type")),
        by_status_class=_counts(document.get("by_status_class")),
        top_clients=_entries(document.get("top_clients"), "user_ip"),
        top_routes=_entries(document.get("top_routes"), "route"),
        top_proxy_chains=_entries(document.get("top_proxy_chains"), "proxy_chain"),
        duration_ms=_millis(document.get("duration_ms")))


@dataclass
class StatsState:
    """The newest answer and the newest failure; kept while the screen is closed, so that
    reopening it shows the last numbers at once (marked stale until the new ones come)."""

    stats: Stats | None = None
    fetched_at: float | None = None  # when ``stats`` came
    problem: ApplianceError | None = None  # why the last attempt got no answer

    def apply(self, at: float, stats: Stats | None, problem: ApplianceError | None) -> None:
        self.problem = problem
        if stats is not None:
            self.stats, self.fetched_at = stats, at

    @property
    def stale(self) -> bool:
        return self.problem is not None


def fetch_stats(client: ApplianceClient) -> tuple[Stats | None, ApplianceError | None]:
    """Blocking: call it from a worker thread. Never raises."""
    try:
        return parse_stats(client.stats()), None
    except ApplianceError as exc:
        if exc.status == 404:
            return None, ApplianceError(exc.kind, f"{exc.reason} (this appliance's version has "
                                                  "no /events/stats)", exc.status)
        return None, exc
    except Exception as exc:  # a client bug must become a banner, not a dead worker
        return None, ApplianceError(ApplianceError.MALFORMED, f"/events/stats: {exc!r}")

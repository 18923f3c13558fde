"""One poll: what the appliance answered to one refresh (a Reading), asked for by ``gather``.

``gather`` runs in a worker thread and never raises: an endpoint that fails is noted in the
Reading's ``problems``, and the state folds in whatever came.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .client import ApplianceClient, ApplianceError

EVENTS_LIMIT = 100  # newest events asked for per poll


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
        """Why there is no /status in this reading (a 401 too: the admin plane needs a token)."""
        return self.problems.get("status")


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

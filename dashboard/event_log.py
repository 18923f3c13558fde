"""The events seen so far, keyed and bounded, with the dashboard's own polls set apart.

The appliance records the dashboard's own requests as events like any others; they are
recognised by their X-Request-ID prefix and counted, never shown.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, Iterable

from .client import REQUEST_ID_PREFIX

MAX_EVENTS = 5000  # events kept in memory; the oldest go first


def event_key(event: dict[str, Any]) -> str:
    """event_id; dead letters have none, their dedup_key is as unique."""
    key = event.get("event_id") or event.get("dedup_key")
    if key:
        return str(key)
    return json.dumps(event, sort_keys=True, default=str)


class EventLog:
    """The newest MAX_EVENTS events by key, in arrival order, and the keys of our own polls."""

    def __init__(self) -> None:
        self.events: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._own_keys: OrderedDict[str, None] = OrderedDict()  # events of our own polls

    def add(self, events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Keep the events not seen before; returns the new ones not ours, oldest first."""
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
    def own(self) -> int:
        """How many of the events kept were our own polls."""
        return len(self._own_keys)

"""The agent's writes to its status database: one round of probe results at a time."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from appliance.core.timefmt import iso
from appliance.schema.status_db import (
    HISTORY_KEEP,
    AgentReport,
    ComponentState,
    StatusHistory,
    database,
)


def record(results: dict[str, tuple[str, str, dict[str, Any]]], now: datetime,
           interval: float, version: str) -> None:
    """Write one round: state changes keep their changed_at, history gains a row each."""
    stamp = iso(now)
    previous = {row.name: row for row in ComponentState.select()}
    with database.atomic():
        for name, (state, detail, data) in results.items():
            before = previous.get(name)
            changed_at = before.changed_at if before and before.state == state else stamp
            ComponentState.insert(name=name, state=state, detail=detail, changed_at=changed_at,
                                  checked_at=stamp, data=json.dumps(data)).on_conflict_replace().execute()
            StatusHistory.create(at=stamp, name=name, state=state, data=json.dumps(data))
        stale = [name for name in previous if name not in results]
        if stale:
            ComponentState.delete().where(ComponentState.name.in_(stale)).execute()
        StatusHistory.delete().where(StatusHistory.at < iso(now - HISTORY_KEEP)).execute()
        AgentReport.insert(id=1, reported_at=stamp, interval=interval,
                           version=version).on_conflict_replace().execute()

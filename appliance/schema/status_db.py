"""The agent's own database (STATUS_DB_PATH): latest state per component and a short history.

A separate SQLite file from the audit database: a locked, read-only or removed events database
is exactly what the agent must still be able to report.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import peewee

database = peewee.DatabaseProxy()
HISTORY_KEEP = timedelta(hours=1)  # enough for the dashboard's sparklines
STATES = ("UP", "DEGRADED", "DOWN", "DISABLED")


class StatusModel(peewee.Model):
    class Meta:
        database = database


class ComponentState(StatusModel):
    name = peewee.CharField(max_length=64, primary_key=True)
    state = peewee.CharField(max_length=16)
    detail = peewee.TextField()
    changed_at = peewee.CharField(max_length=32)
    checked_at = peewee.CharField(max_length=32)
    data = peewee.TextField(default="{}")

    class Meta:
        table_name = "component_state"


class StatusHistory(StatusModel):
    at = peewee.CharField(max_length=32, index=True)
    name = peewee.CharField(max_length=64)
    state = peewee.CharField(max_length=16)
    data = peewee.TextField(default="{}")

    class Meta:
        table_name = "status_history"


class AgentReport(StatusModel):
    """One row: when the agent last finished a round, and its interval."""

    id = peewee.IntegerField(primary_key=True, default=1)
    reported_at = peewee.CharField(max_length=32)
    interval = peewee.FloatField()
    version = peewee.CharField(max_length=64)

    class Meta:
        table_name = "agent_report"


MODELS = (ComponentState, StatusHistory, AgentReport)


def connect(path: Path, readonly: bool = False) -> peewee.SqliteDatabase:
    if readonly:
        db = peewee.SqliteDatabase(f"file:{path}?mode=ro", uri=True,
                                   pragmas={"busy_timeout": 2000})
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = peewee.SqliteDatabase(str(path), pragmas={"journal_mode": "wal", "busy_timeout": 5000,
                                                       "synchronous": "normal"})
    database.initialize(db)
    db.connect(reuse_if_open=True)
    if not readonly:
        db.create_tables(MODELS, safe=True)
    return db


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


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

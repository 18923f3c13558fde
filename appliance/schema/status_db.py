"""The agent's own database (STATUS_DB_PATH): latest state per component and a short history.

Written only by the agent (agent/status_writer.py), read by the API for /status. A separate
SQLite file from the audit database: a locked, read-only or removed events database is exactly
what the agent must still be able to report.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import peewee

from appliance.core import sqlite

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
    """Bind the models to the file (created with its tables unless ``readonly``)."""
    db = sqlite.peewee_database(path, readonly=readonly)
    database.initialize(db)
    db.connect(reuse_if_open=True)
    if not readonly:
        db.create_tables(MODELS, safe=True)
    return db

"""GET /status: the agent's latest snapshot of every component, and its recent history.

Only reads: the agent is the one writer of the status database (read-only connections here).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

import bottle
import peewee

from appliance.api.http.errors import HttpError
from appliance.api.http.jsonio import json_response
from appliance.api.http.queries import parse_time, refuse_unknown
from appliance.api.http.services import Services
from appliance.core import diskspace, sqlite
from appliance.core.timefmt import age_s, iso, utc_now_iso
from appliance.core.version import __version__
from appliance.schema import status_db

STALE_INTERVALS = 3  # agent silent this many intervals -> its data is not current
NEVER_REPORTED = {"state": "DOWN", "detail": "the agent has never reported"}
STARTED = time.time()


def live_disk(settings) -> dict[str, Any]:
    """The disk component as of now: a full disk may be exactly what keeps the agent from
    recording its rounds, and statvfs costs microseconds."""
    state, detail, data = diskspace.check(settings)
    now = utc_now_iso()
    return {"state": state, "detail": detail, "since": now, "checked_at": now, "data": data}


def read_status(services: Services, history_minutes: int, since: str | None = None) -> dict[str, Any]:
    base = {"version": __version__, "hostname": services.host.hostname,
            "api_uptime_s": round(time.time() - STARTED, 1),
            "switches": services.faults.summary()}  # a fault injected, a drain: said first
    settings = services.settings
    if "agent" not in settings.programs:  # nobody probes: only what the API sees itself
        disk = live_disk(settings)
        agent = {"state": "DISABLED", "detail": "the agent is not run by this appliance "
                                                f"(APPLIANCE_PROGRAMS={','.join(settings.programs)})"}
        return {**base, "overall": disk["state"], "stale": True, "components": {"disk": disk},
                "agent": agent}
    if not settings.status_db_path.exists():
        return {**base, "overall": "DOWN", "stale": True,
                "components": {"disk": live_disk(settings)}, "agent": NEVER_REPORTED}
    with status_db.database.connection_context():
        report = status_db.AgentReport.get_or_none(id=1)
        components = {row.name: {"state": row.state, "detail": row.detail, "since": row.changed_at,
                                 "checked_at": row.checked_at, "data": json.loads(row.data)}
                      for row in status_db.ComponentState.select().order_by(status_db.ComponentState.name)}
        history = history_rows(history_minutes, since) if history_minutes else None
    disk = live_disk(services.settings)
    if disk["state"] == components.get("disk", {}).get("state"):
        disk["since"] = components["disk"]["since"]  # the agent knows since when
    components["disk"] = disk
    agent = agent_state(report)
    states = {c["state"] for c in components.values()} | {agent["state"]}
    overall = "DOWN" if "DOWN" in states else "DEGRADED" if "DEGRADED" in states else "UP"
    body = {**base, "overall": overall, "stale": agent["state"] != "UP", "agent": agent,
            "components": components}
    if history is not None:
        body["history"] = history
    return body


def agent_state(report) -> dict[str, Any]:
    if report is None:
        return NEVER_REPORTED
    age = age_s(report.reported_at)
    state = "UP" if age <= STALE_INTERVALS * report.interval else "DOWN"
    detail = (f"reported {age:.1f} s ago" if state == "UP"
              else f"silent for {age:.0f} s (> {STALE_INTERVALS} intervals): data below is not current")
    return {"state": state, "detail": detail, "reported_at": report.reported_at,
            "age_s": round(age, 1), "interval_s": report.interval}


def history_rows(minutes: int, after: str | None = None) -> dict[str, list]:
    """The rounds of the last ``minutes``; with ``after``, only those recorded after it (a
    dashboard that has the rest already asks for just what is new)."""
    since = iso(datetime.fromtimestamp(time.time() - minutes * 60, timezone.utc))
    rows = status_db.StatusHistory.select().where(status_db.StatusHistory.at >= since)
    if after:
        rows = rows.where(status_db.StatusHistory.at > after)
    rows = rows.order_by(status_db.StatusHistory.at)
    history: dict[str, list] = {}
    for row in rows:
        history.setdefault(row.name, []).append([row.at, row.state, json.loads(row.data)])
    return history


def parse_history(raw: str | None) -> int:
    if raw is None:
        return 0
    if not (raw.isascii() and raw.isdigit()) or int(raw) > 60:
        raise HttpError(400, "history must be minutes from 0 to 60")
    return int(raw)


def add_status_routes(app: bottle.Bottle, services: Services) -> None:
    status_db.database.initialize(
        sqlite.peewee_database(services.settings.status_db_path, readonly=True))

    @app.get("/status")
    def status():
        query = bottle.request.query
        refuse_unknown(query, {"history", "since"})
        minutes = parse_history(query.get("history"))
        since = parse_time("since", query.get("since"))
        try:
            return json_response(200, read_status(services, minutes, since))
        except peewee.PeeweeException as exc:
            raise HttpError(503, f"status database not readable: {exc}") from None

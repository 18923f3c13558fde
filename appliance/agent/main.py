"""The agent program: clear what a killed agent may have left, then probe until stopped."""

from __future__ import annotations

import logging

from appliance.agent.loop import Agent
from appliance.agent.recycler import ensure_broker_running
from appliance.core.config import Settings
from appliance.core.process import Runtime
from appliance.schema import status_db
from appliance.schema.pause import PauseFlag

log = logging.getLogger("appliance.agent")


def watch(runtime: Runtime, settings: Settings) -> int:
    # A pause flag left by an agent killed mid-recycle would keep the API from sending.
    PauseFlag(settings.layout.pause_flag).clear()
    if "broker" in settings.programs:
        ensure_broker_running(settings)
    status_db.connect(settings.status_db_path)
    log.info("agent started", extra={"interval_s": settings.status_interval,
                                     "status_db": str(settings.status_db_path)})
    Agent(settings, runtime.stop).run()
    log.info("agent stopped")
    return 0

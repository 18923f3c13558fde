"""The run-time switches (admin plane, write token): POST /readyz/disable|enable, the drain test
of a load balancer, and GET|POST|DELETE /faults. Every API process follows within 0.25 s
(schema/switches.py)."""

from __future__ import annotations

import math
import time
from typing import Any

import bottle

from appliance.api.http.errors import HttpError
from appliance.api.http.faults import NEVER_FAULTED, NEVER_FAULTED_PREFIXES, fault_view
from appliance.api.http.jsonio import read_json_object
from appliance.api.http.services import Services
from appliance.schema.switches import Fault

DEFAULT_DURATION, MAX_DURATION = 300, 86_400  # seconds a run-time fault lasts
MAX_ROUTES = 32
FAULT_FIELDS = frozenset({"error_rate", "delay_ms", "routes", "duration_s"})


def _number(body: dict, name: str, low: float, high: float, default: float) -> float:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and low <= value <= high):
        raise HttpError(400, f"{name} must be a number from {low:g} to {high:g}")
    return value


def _routes(body: dict) -> tuple[str, ...]:
    routes = body.get("routes", ["/"])
    valid = (isinstance(routes, list) and 1 <= len(routes) <= MAX_ROUTES and all(
        isinstance(r, str) and r.startswith("/") and len(r) <= 255 and "*" not in r[:-1]
        for r in routes))
    if not valid:
        raise HttpError(400, f"routes must be a list of 1-{MAX_ROUTES} paths starting with /, "
                             f"a prefix ending in *")
    never = [r for r in routes if r in NEVER_FAULTED or r.startswith(NEVER_FAULTED_PREFIXES)]
    if never:
        raise HttpError(400, f"routes may not include {never[0]}: probes and the admin plane "
                             f"are never faulted")
    return tuple(routes)


def parse_fault(body: dict[str, Any]) -> Fault:
    unknown = sorted(set(body) - FAULT_FIELDS)
    if unknown:
        raise HttpError(400, f"unknown field(s): {', '.join(unknown)}")
    error_rate = _number(body, "error_rate", 0, 1, 0)
    delay_ms = _number(body, "delay_ms", 0, 60_000, 0)
    if delay_ms != int(delay_ms):
        raise HttpError(400, "delay_ms must be a whole number of milliseconds")
    if error_rate == 0 and delay_ms == 0:
        raise HttpError(400, "a fault needs error_rate or delay_ms above 0 (DELETE /faults ends one)")
    duration = _number(body, "duration_s", 1, MAX_DURATION, DEFAULT_DURATION)
    return Fault(error_rate=float(error_rate), delay_ms=int(delay_ms), routes=_routes(body),
                 until=time.time() + duration, source="runtime")


def add_switch_routes(app: bottle.Bottle, services: Services) -> None:
    settings = services.settings

    def faults_document() -> dict[str, Any]:
        return {**services.faults.summary(),
                "runtime": fault_view(services.switches.get().fault),
                "configured": fault_view(services.faults.configured)}

    def drain(draining: bool) -> dict[str, Any]:
        services.switches.changed(services.switch_file.change(draining=draining))
        return {"draining": draining, "readyz": 503 if draining else 200}

    @app.post("/readyz/disable")
    def readyz_disable():
        return drain(True)

    @app.post("/readyz/enable")
    def readyz_enable():
        return drain(False)

    @app.get("/faults")
    def faults_get():
        return faults_document()

    @app.post("/faults")
    def faults_set():
        fault = parse_fault(read_json_object(bottle.request, settings.max_body_bytes))
        services.switches.changed(services.switch_file.change(fault=fault))
        return faults_document()

    @app.delete("/faults")
    def faults_clear():
        services.switches.changed(services.switch_file.change(fault=None))
        return faults_document()

"""The run-time switches file, the fault policy and what the dashboard's banner says of them."""

from __future__ import annotations

import json
import time

from conftest import call_wsgi

from appliance.api.http.app import create_app
from appliance.api.http.faults import DelaySlots, FaultPolicy
from appliance.core.config import Settings
from appliance.schema.switches import CHECK_EVERY, Fault, SwitchFile, SwitchReader
from dashboard.widgets.banner import switch_lines

WRITE = {"Authorization": "Bearer switches-write-token"}


def test_changing_one_switch_keeps_the_other(tmp_path):
    file = SwitchFile(tmp_path / "switches.json")
    file.change(draining=True)
    file.change(fault=Fault(error_rate=0.5, until=time.time() + 60, source="runtime"))
    read = file.read()
    assert read.draining is True and read.fault.error_rate == 0.5 and read.fault.routes == ("/",)


def test_a_missing_or_unreadable_file_is_no_switch_set(tmp_path):
    file = SwitchFile(tmp_path / "switches.json")
    assert file.read().draining is False and file.read().fault is None
    file.path.write_text('{"fault": {"error_rate": "lots"')
    assert file.read().fault is None
    file.path.write_text(json.dumps({"draining": True, "fault": {"nonsense": 1}}))
    assert file.read().fault is None


def test_every_reader_follows_a_change_within_a_quarter_second(tmp_path):
    file = SwitchFile(tmp_path / "switches.json")
    reader = SwitchReader(file)
    SwitchFile(file.path).change(draining=True)  # another process
    time.sleep(CHECK_EVERY + 0.05)
    assert reader.get().draining is True


def test_a_fault_ends_by_itself_at_its_expiry():
    assert Fault(error_rate=1, until=time.time() + 60).active
    assert not Fault(error_rate=1, until=time.time() - 1).active
    assert not Fault(error_rate=0, delay_ms=0).active  # nothing to inject


def test_routes_are_exact_paths_or_prefixes():
    fault = Fault(error_rate=1, routes=("/", "/api/*"))
    assert fault.covers("/") and fault.covers("/api/") and fault.covers("/api/x/y")
    assert not fault.covers("/apix") and not fault.covers("/other")


def app_with(tmp_path, **env):
    settings = Settings.from_env({"DATA_DIR": str(tmp_path), "API_TOKEN": "switches-write-token", **env})
    return create_app(settings)


def test_probes_and_the_admin_plane_are_never_faulted(tmp_path):
    app = app_with(tmp_path, FAULT_ERROR_RATE="1", FAULT_ROUTES="/*")
    assert call_wsgi(app, "GET", "/").status == 500
    assert call_wsgi(app, "GET", "/headers").status == 500
    for path in ("/healthz", "/readyz", "/faults", "/events", "/events/stats", "/metrics",
                 "/kafka/status"):
        assert call_wsgi(app, "GET", path, headers=WRITE).status != 500, path
    assert call_wsgi(app, "POST", "/readyz/enable", headers=WRITE).status == 200


def test_an_injected_error_says_so_in_its_body_and_a_header(tmp_path):
    reply = call_wsgi(app_with(tmp_path, FAULT_ERROR_RATE="1"), "GET", "/")
    assert reply.status == 500 and reply.headers["X-Fault-Injected"] == "error"
    assert reply.json() == {"error": "injected fault (FAULT_ERROR_RATE)", "status": 500}


def test_an_injected_delay_takes_a_slot_or_is_not_injected(tmp_path):
    settings = Settings.from_env({"DATA_DIR": str(tmp_path), "FAULT_DELAY_MS": "50"})
    policy = FaultPolicy(settings, SwitchReader(SwitchFile(tmp_path / "s.json")), DelaySlots(1))
    started = time.monotonic()
    injection = policy.apply({"PATH_INFO": "/"})
    assert injection.record() == {"kind": "delay", "value": 50}
    assert time.monotonic() - started >= 0.05
    no_slots = FaultPolicy(settings, SwitchReader(SwitchFile(tmp_path / "s.json")), DelaySlots(0))
    assert no_slots.apply({"PATH_INFO": "/"}) is None  # served at once, not marked


def test_a_run_time_fault_is_checked_and_wins_over_the_configured_one(tmp_path):
    app = app_with(tmp_path, FAULT_ERROR_RATE="0.1")
    post = {**WRITE, "Content-Type": "application/json"}
    for body, message in (({"error_rate": 2}, "error_rate must be a number from 0 to 1"),
                          ({"delay_ms": 1.5}, "delay_ms must be a whole number of milliseconds"),
                          ({}, "a fault needs error_rate or delay_ms above 0"),
                          ({"error_rate": 1, "routes": ["/readyz"]}, "routes may not include /readyz"),
                          ({"error_rate": 1, "routes": "/"}, "routes must be a list"),
                          ({"error_rate": 1, "duration_s": 0}, "duration_s must be a number"),
                          ({"error_rate": 1, "colour": "red"}, "unknown field(s): colour")):
        reply = call_wsgi(app, "POST", "/faults", headers=post, body=json.dumps(body).encode())
        assert reply.status == 400 and reply.json()["error"].startswith(message), body
    reply = call_wsgi(app, "POST", "/faults", headers=post,
                      body=json.dumps({"error_rate": 1, "routes": ["/status/*"], "duration_s": 60}).encode())
    active = reply.json()["active"]
    assert active["source"] == "runtime" and active["routes"] == ["/status/*"] and active["until"]
    assert reply.json()["configured"]["error_rate"] == 0.1
    assert call_wsgi(app, "GET", "/status/200").status == 500
    cleared = call_wsgi(app, "DELETE", "/faults", headers=WRITE).json()
    assert cleared["runtime"] is None and cleared["active"]["source"] == "settings"


def test_the_banner_says_a_fault_and_a_drain_first():
    switches = {"active": {"source": "runtime", "error_rate": 0.5, "delay_ms": 0, "routes": ["/"],
                           "until": "2026-12-04T12:00:00.000000Z"}, "draining": True}
    lines = switch_lines(switches)
    assert lines == [
        ("warning", "⚠ Fault injected (runtime): error rate 0.5, delay 0 ms on / until "
                    "2026-12-04T12:00:00.000000Z"),
        ("warning", "⚠ Drained: /readyz answers 503 until POST /readyz/enable")]
    assert switch_lines({"active": None, "draining": False}) == []
    assert switch_lines("nonsense") == []

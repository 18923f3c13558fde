"""Faults injected on purpose, against the whole appliance (`up`, embedded broker, two API
processes): the share asked for, probes never touched, every injected exchange found again in
the audit trail; and the drain and run-time fault switches followed by every API process."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from procs import wait_until
from test_appliance_e2e import appliance  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.broker]
REQUESTS = 2000


def probe_until(app, stop: threading.Event, failures: list) -> int:
    probes = 0
    while not stop.is_set():
        for path in ("/healthz", "/readyz"):
            reply = app.http.get(path, timeout=5)
            probes += 1
            if reply.status != 200:
                failures.append((path, reply.status))
        time.sleep(0.01)
    return probes


def all_pages(app, query: str) -> list[dict]:
    found, cursor = [], None
    while True:
        page_query = query + (f"&cursor={cursor}" if cursor else "")
        status, body = app.get(f"/events?{page_query}&limit=500")
        assert status == 200, body
        found += body["events"]
        cursor = body["next"]
        if not cursor:
            return found


def test_half_of_the_requests_fail_on_purpose_and_each_one_is_in_the_audit_trail(appliance):  # noqa: F811
    app = appliance(FAULT_ERROR_RATE="0.5", WEB_PROCESSES="2")
    prefix = f"fi-{uuid.uuid4().hex[:6]}"
    stop, probe_failures = threading.Event(), []
    prober = threading.Thread(target=lambda: probe_until(app, stop, probe_failures))
    prober.start()
    injected_ids, answered = set(), 0
    try:
        for i in range(REQUESTS):
            reply = app.http.get("/", anonymous=True, headers={"X-Request-ID": f"{prefix}-{i}"})
            answered += 1
            assert reply.status in (200, 500)
            if reply.status == 500:
                assert reply.headers["X-Fault-Injected"] == "error"
                injected_ids.add(reply.headers["X-Request-ID"])
    finally:
        stop.set()
        prober.join()
    assert probe_failures == []
    assert 0.45 * REQUESTS <= len(injected_ids) <= 0.55 * REQUESTS, len(injected_ids)
    wait_until(lambda: app.rows(f"SELECT COUNT(*) FROM http_responses WHERE request_id "
                                f"LIKE '{prefix}-%'")[0][0] == REQUESTS, 60, 0.5, "every response a row")
    found = all_pages(app, "injected=true")
    found_ids = [e["request_id"] for e in found if e["request_id"].startswith(prefix)]
    assert sorted(found_ids) == sorted(injected_ids)  # exactly these, each once
    assert all(e["injected"] == {"kind": "error", "value": 500} and e["status"] == 500 for e in found)
    others = [e for e in all_pages(app, "injected=false&path=/&status=2xx")
              if e["request_id"].startswith(prefix)]
    assert len(others) == REQUESTS - len(injected_ids)
    metrics = app.metrics()
    assert f'faults_injected_total{{kind="error"}} {float(len(injected_ids))}' in metrics
    switches = app.status()["switches"]
    assert switches["active"] == {"error_rate": 0.5, "delay_ms": 0, "routes": ["/"],
                                  "until": None, "source": "settings"}


def test_drain_and_run_time_faults_reach_every_api_process_and_end_by_themselves(appliance):  # noqa: F811
    app = appliance(WEB_PROCESSES="2")

    def readyz_all(expected: int) -> bool:
        return all(app.http.get("/readyz", timeout=5).status == expected for _ in range(40))

    assert app.request("POST", "/readyz/disable")[0] == 200
    time.sleep(0.3)  # every process looks at the switches every 0.25 s
    assert readyz_all(503)
    assert app.http.get("/healthz").status == 200 and app.http.get("/", anonymous=True).status == 200
    assert app.status()["switches"]["draining"] is True
    assert app.request("POST", "/readyz/enable")[0] == 200
    time.sleep(0.3)
    assert readyz_all(200)

    body = json.dumps({"error_rate": 1, "routes": ["/status/*"], "duration_s": 3}).encode()
    status, answer, _ = app.request("POST", "/faults", body=body,
                                    headers={"Content-Type": "application/json"})
    assert status == 200 and answer["active"]["source"] == "runtime"
    time.sleep(0.3)
    assert all(app.http.get("/status/200", timeout=5).status == 500 for _ in range(40))
    assert app.http.get("/", anonymous=True).status == 200  # not one of its routes
    wait_until(lambda: app.http.get("/status/200", timeout=5).status == 200, 10, 0.2,
               "the fault to end at its expiry")
    assert all(app.http.get("/status/200", timeout=5).status == 200 for _ in range(40))
    assert app.get("/faults")[1]["active"] is None

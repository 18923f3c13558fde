"""The whole appliance: real supervisord with the real conf/supervisord.conf, the embedded broker,
API, consumer and agent processes, temp dirs and free ports."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from procs import Appliance, Process, broker_binary, free_port, wait_until

from appliance import supervise
from appliance.core.config import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.broker]
PROCESSES = ("process.api", "process.consumer", "process.agent", "process.broker")


class Supervised(Appliance):
    """`simple-time-service up` with KAFKA_BROKERS=embedded; reads go through HTTP and SQLite."""

    def __init__(self, tmp_path: Path, **env: str) -> None:
        broker_binary()  # fail in CI / skip locally when the embedded broker cannot exist
        super().__init__(tmp_path, "embedded", EMBEDDED_BROKER_PORT=str(free_port()),
                         STATUS_INTERVAL="1", LOG_LEVEL="WARNING", **env)
        self.up = Process([sys.executable, "-m", "appliance", "up"], self.env, tmp_path / "up.log")
        self.settings = Settings(data_dir=self.data_dir)

    def start(self) -> "Supervised":
        self.up.start()
        wait_until(lambda: self._healthy(self.up), 30, 0.2, "API /healthz under supervisord")
        wait_until(lambda: self.all_up(PROCESSES + ("kafka",)), 60, 0.5, "every process and Kafka UP")
        return self

    def status(self) -> dict:
        return self.get("/status")[1]

    def all_up(self, names) -> bool:
        components = self.status().get("components", {})
        return all(components.get(n, {}).get("state") == "UP" for n in names)

    def pid(self, program: str) -> int:
        return supervise.client(self.settings).supervisor.getProcessInfo(program)["pid"]

    def events(self, kind: str) -> list[dict]:
        status, body = self.get(f"/events?type={kind}&limit=500")
        assert status == 200, body
        return body["events"]

    def stop(self) -> None:
        self.up.stop(timeout=60)


@pytest.fixture
def appliance(tmp_path):
    started: list[Supervised] = []

    def make(**env) -> Supervised:
        item = Supervised(tmp_path / f"a{len(started)}", **env)
        item.tmp_path.mkdir(parents=True, exist_ok=True)
        started.append(item)
        return item.start()

    yield make
    for item in started:
        item.stop()


def send(app: Supervised, count: int, prefix: str) -> list[str]:
    ids = [f"{prefix}-{i}-{uuid.uuid4().hex[:6]}" for i in range(count)]
    for request_id in ids:
        assert app.get("/", **{"X-Request-ID": request_id})[0] == 200
    return ids


def request_ids_via_events(app: Supervised, prefix: str) -> list[str]:
    return [e["request_id"] for e in app.events("http_request") if e["request_id"].startswith(prefix)]


def wait_for_ids(app: Supervised, ids: list[str], prefix: str, timeout: float = 60) -> None:
    wait_until(lambda: len(request_ids_via_events(app, prefix)) >= len(ids), timeout, 0.2,
               f"{len(ids)} request rows via /events")
    time.sleep(1)  # a duplicate would arrive right behind
    seen = request_ids_via_events(app, prefix)
    assert sorted(seen) == sorted(ids), f"{len(seen)} rows for {len(ids)} requests"


def test_requests_land_in_events_exactly_once_and_quickly(appliance):
    app = appliance()
    assert app.get("/")[1]["kafka_status"] == "UP"
    started = time.monotonic()
    first = send(app, 1, "quick")
    wait_for_ids(app, first, "quick", timeout=2)
    assert time.monotonic() - started < 3.5  # 2 s to appear (+1 s duplicate watch)
    ids = send(app, 60, "many")
    wait_for_ids(app, ids, "many")


def test_killed_consumer_is_restarted_without_gaps_or_duplicates(appliance):
    app = appliance()
    before = send(app, 20, "k1")
    old_pid = app.pid("consumer")
    os.kill(old_pid, signal.SIGKILL)
    during = send(app, 20, "k2")
    wait_until(lambda: app.pid("consumer") not in (0, old_pid), 30, 0.2, "consumer restarted")
    wait_for_ids(app, before, "k1")
    wait_for_ids(app, during, "k2")


def test_status_reports_every_component_and_a_stopped_program_as_down(appliance):
    app = appliance()
    components = app.status()["components"]
    for name in PROCESSES + ("kafka", "api", "database", "spool"):
        assert components[name]["state"] == "UP", (name, components[name])
    assert components["otel"]["state"] == "DISABLED"
    assert components["prometheus"]["state"] == "DISABLED"
    assert app.status()["agent"]["state"] == "UP"
    supervise.client(app.settings).supervisor.stopProcess("consumer", True)
    wait_until(lambda: app.status()["components"]["process.consumer"]["state"] == "DOWN", 10, 0.3,
               "process.consumer DOWN")
    assert app.status()["overall"] == "DOWN"


def test_status_says_so_when_the_agent_is_silent(appliance):
    app = appliance()
    supervise.client(app.settings).supervisor.stopProcess("agent", True)
    wait_until(lambda: app.status()["agent"]["state"] == "DOWN", 10, 0.5, "agent DOWN after 3 intervals")
    status = app.status()
    assert status["stale"] is True and "not current" in status["agent"]["detail"]


def test_sigterm_under_load_exits_cleanly_and_loses_no_accepted_event(appliance):
    app = appliance()
    accepted: list[str] = []
    stop = threading.Event()

    def load():
        while not stop.is_set():
            request_id = f"load-{uuid.uuid4().hex[:10]}"
            try:
                if app.get("/", **{"X-Request-ID": request_id})[0] == 200:
                    accepted.append(request_id)
            except OSError:
                return  # the listener closed: shutdown has begun

    worker = threading.Thread(target=load)
    worker.start()
    time.sleep(2)
    started = time.monotonic()
    app.up.send(signal.SIGTERM)
    code = app.up.proc.wait(60)
    stop.set()
    worker.join(10)
    assert code == 0
    assert time.monotonic() - started < 45
    assert len(accepted) > 20
    # Same DATA_DIR again: whatever was spooled at shutdown is replayed; every accepted request
    # must be in the database exactly once.
    app.up = Process(app.up.args, app.env, app.tmp_path / "up2.log")
    app.start()
    def stored() -> list[str]:  # more than /events' 500 per page: read the table itself
        return [r[0] for r in app.rows("SELECT request_id FROM http_requests WHERE request_id LIKE 'load-%'")]

    try:
        wait_until(lambda: set(accepted) <= set(stored()), 60, 0.5, "every accepted request persisted")
    finally:
        missing = set(accepted) - set(stored())
        assert not missing, f"{len(missing)} of {len(accepted)} accepted requests lost"
    assert len(stored()) == len(set(stored())), "duplicate rows"


def test_embedded_broker_is_recycled_at_its_memory_limit_without_losing_events(appliance):
    app = appliance(EMBEDDED_BROKER_MAX_MB="24")
    old_pid = app.pid("broker")
    published = []
    for i in range(400):  # ~24 MB of messages: over the limit, so the agent must act
        # Random, so that it stays ~24 MB in the broker: events are sent lz4-compressed.
        status, body = app.publish("load.blob", {"blob": os.urandom(30_000).hex(), "i": i})
        assert status == 202, body
        published.append(body["event_id"])
        if app.pid("broker") != old_pid:
            break
    wait_until(lambda: app.pid("broker") not in (0, old_pid), 90, 0.5, "broker recycled")
    more = send(app, 20, "after-recycle")
    wait_for_ids(app, more, "after-recycle", timeout=90)
    wait_until(lambda: len(app.rows("SELECT event_id FROM custom_events")) >= len(published), 90, 0.5,
               "every published event persisted")
    stored = [r[0] for r in app.rows("SELECT event_id FROM custom_events")]
    assert sorted(stored) == sorted(published)
    # Bounded, whatever a fresh broker costs on this machine: the agent recycles it again while
    # it is over the limit, so it comes back under it.
    wait_until(lambda: app.status()["components"]["process.broker"]["data"]["rss_mb"] <= 24, 60,
               0.5, "broker RSS back under EMBEDDED_BROKER_MAX_MB")
    assert '"reason":"memory"' in app.up.output() and "embedded broker recycled" in app.up.output()

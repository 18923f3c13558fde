"""The agent's probes: each component's state from the real thing it looks at."""

from __future__ import annotations

import shutil
import socket
import subprocess

import pytest
from procs import IN_CI, Appliance, free_port, wait_until

from appliance.agent import probes
from appliance.core.config import Settings
from appliance.pipeline.consumer import store
from appliance.pipeline.producer.spool import Spool
from appliance.schema.consumer_report import ConsumerReport
from appliance.schema.producer_status import ProducerStatus


def settings(tmp_path, **env) -> Settings:
    return Settings.from_env({"DATA_DIR": str(tmp_path), **env})


def test_unconfigured_components_are_disabled(tmp_path):
    s = settings(tmp_path)
    assert probes.otel(s)[0] == "DISABLED"
    assert probes.prometheus(s)[0] == "DISABLED"
    assert probes.spool(s, None)[0] == "DISABLED"
    assert probes.KafkaProbe(s)()[0] == "DISABLED"


def test_collector_is_down_when_nothing_listens_and_up_when_it_does(tmp_path):
    port = free_port()
    nowhere = settings(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}")
    assert probes.otel(nowhere)[0] == "DOWN"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
        assert probes.otel(settings(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint))[0] == "UP"


def test_unreachable_kafka_is_down(tmp_path):
    state, detail, _ = probes.KafkaProbe(settings(tmp_path, KAFKA_BROKERS=f"127.0.0.1:{free_port()}"))()
    assert state == "DOWN" and "not reachable" in detail


def test_spool_with_events_waiting_for_an_absent_kafka_is_degraded(tmp_path):
    s = settings(tmp_path, KAFKA_BROKERS="127.0.0.1:9")
    assert probes.spool(s, None) == ("UP", "empty", {"depth": 0, "dropped": 0})
    spool = Spool(s.spool_dir, 1_000_000)
    spool.append([(b"k", b"v" * 10, None)] * 3)
    spool.close()
    state, detail, data = probes.spool(s, ProducerStatus(connected=False))
    assert (state, data["depth"]) == ("DEGRADED", 3) and "3 events waiting" in detail
    assert probes.spool(s, None)[0] == "DEGRADED"  # the API does not answer: Kafka is not known UP


def test_spool_holding_events_on_their_way_to_a_connected_kafka_is_up(tmp_path):
    s = settings(tmp_path, KAFKA_BROKERS="127.0.0.1:9")
    spool = Spool(s.spool_dir, 1_000_000)
    spool.append([(b"k", b"v" * 10, None)] * 3)
    spool.close()
    state, detail, data = probes.spool(s, ProducerStatus(connected=True, unconfirmed=2, in_flight=1))
    assert state == "UP" and "3 events on their way" in detail and data["unconfirmed"] == 2


def test_database_states(tmp_path):
    s = settings(tmp_path)
    assert probes.database(s, None)[0] == "DOWN"  # not created yet
    db = store.Store(s.db_path)
    db.open()
    db.close()
    state, _, data = probes.database(s, ConsumerReport(db_failing=False))
    assert state == "UP" and data["rows"]["http_requests"] == 0
    state, detail, _ = probes.database(s, ConsumerReport(db_failing=True, last_db_error="disk full"))
    assert state == "DOWN" and "disk full" in detail
    with open(s.db_path, "r+b") as corrupt:
        corrupt.write(b"not a database at all" * 10)
    assert probes.database(s, None)[0] == "DOWN"


@pytest.fixture
def prometheus(tmp_path):
    """A real Prometheus (Debian package) scraping one target we name."""
    binary = shutil.which("prometheus")
    if binary is None:
        if IN_CI:
            pytest.fail("prometheus is required in CI (Debian package prometheus)")
        pytest.skip("prometheus not installed")
    started = []

    def start(target_port: int) -> str:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: sts\n    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n")
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(process)
        return f"http://127.0.0.1:{port}"

    yield start
    for process in started:
        process.terminate()
        process.wait(10)


def test_prometheus_scraping_this_appliance_is_up(tmp_path, prometheus):
    app = Appliance(tmp_path, None)
    app.start_api()
    try:
        admin_port = app.env["ADMIN_PORT"]  # /metrics is scraped there, without a token
        url = prometheus(int(admin_port))
        s = settings(tmp_path, PROMETHEUS_URL=url, PORT=str(app.port), ADMIN_PORT=admin_port)
        state = wait_until(lambda: probes.prometheus(s)[0] == "UP" and "UP", 30, 0.5, "scrape UP")
        assert state == "UP"
        other = settings(tmp_path, PROMETHEUS_URL=url, ADMIN_PORT=str(free_port()))
        assert probes.prometheus(other)[0] == "DEGRADED"  # ready, but not scraping that port
    finally:
        app.stop()
    nowhere = settings(tmp_path, PROMETHEUS_URL=f"http://127.0.0.1:{free_port()}")
    assert probes.prometheus(nowhere)[0] == "DOWN"


def test_a_program_restarted_three_times_in_two_minutes_is_down_as_failing(tmp_path, monkeypatch):
    from appliance.agent.processes import ProcessProbe
    from appliance.core import supervisor

    clock = [1000.0]
    pid = [100]
    monkeypatch.setattr(supervisor, "processes", lambda settings: [{
        "name": "consumer", "pid": pid[0], "statename": "RUNNING", "now": 10, "start": 5,
        "description": "pid 100, uptime 0:00:05"}])
    probe = ProcessProbe(settings(tmp_path), clock=lambda: clock[0])
    assert probe()["process.consumer"][0] == "UP"
    for _ in range(3):
        pid[0] += 1
        clock[0] += 10
        state, detail, _ = probe()["process.consumer"]
    assert state == "DOWN" and "failing: 3 restarts in the last 120 s" in detail
    clock[0] += 121
    assert probe()["process.consumer"][0] == "UP"


def test_broker_recycles_by_the_agent_are_not_failures(tmp_path, monkeypatch):
    from appliance.agent.processes import ProcessProbe
    from appliance.core import supervisor

    pid = [100]
    monkeypatch.setattr(supervisor, "processes", lambda settings: [{
        "name": "broker", "pid": pid[0], "statename": "RUNNING", "now": 10, "start": 5,
        "description": "running"}])
    probe = ProcessProbe(settings(tmp_path, KAFKA_BROKERS="embedded"))
    probe()
    for recycles in range(1, 5):
        pid[0] += 1
        probe.broker_extra = {"recycles": recycles}
        assert probe()["process.broker"][0] == "UP"


def test_programs_deliberately_not_run_are_disabled_not_down(tmp_path, monkeypatch):
    from appliance.agent.processes import ProcessProbe
    from appliance.core import supervisor

    monkeypatch.setattr(supervisor, "processes", lambda settings: [{
        "name": "consumer", "pid": 100, "statename": "RUNNING", "now": 10, "start": 5,
        "description": "pid 100, uptime 0:00:05"}])
    s = settings(tmp_path, APPLIANCE_PROGRAMS="consumer,agent", KAFKA_BROKERS="127.0.0.1:9")
    results = ProcessProbe(s)()
    assert set(results) == {"process.consumer", "process.api", "process.agent", "process.broker"}
    assert results["process.api"] == (
        "DISABLED", "not run by this appliance (APPLIANCE_PROGRAMS=consumer,agent)", {})
    assert results["process.agent"] == (
        "DOWN", "chosen, but supervisord has no program agent (restart the appliance)", {})
    assert results["process.broker"] == ("DISABLED", "external or no Kafka", {})
    assert probes.api(s) == ("DISABLED", "not run by this appliance (APPLIANCE_PROGRAMS=consumer,agent)", {})
    assert probes.spool(s, None)[0] == "DISABLED"


def test_an_embedded_broker_left_to_another_appliance_is_disabled(tmp_path, monkeypatch):
    from appliance.agent.processes import ProcessProbe
    from appliance.core import supervisor

    monkeypatch.setattr(supervisor, "processes", lambda settings: [])
    s = settings(tmp_path, APPLIANCE_PROGRAMS="api", KAFKA_BROKERS="embedded")
    assert ProcessProbe(s)()["process.broker"] == (
        "DISABLED", "not run by this appliance (APPLIANCE_PROGRAMS=api)", {})

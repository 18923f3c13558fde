"""N appliances on one Kafka and one PostgreSQL (DATABASE_URL), on real parts: a Tansu broker,
a throwaway PostgreSQL cluster, and two appliances (API + consumer each, their own ports and
DATA_DIRs) whose consumers share one group. Every request answered by either is exactly one row
in PostgreSQL, whatever happens to a consumer or to the database meanwhile."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import pytest
from confluent_kafka import Consumer
from procs import Appliance, Load, wait_until

GROUP_ENV = {"KAFKA_CONSUMER_GROUP": "scale-out", "KAFKA_TOPIC_EVENTS": "scale-out-events",
             "KAFKA_PARTITIONS": "4", "LOG_LEVEL": "INFO"}


@pytest.fixture
def pair(tmp_path, broker, pg_url):
    """Appliances A and B: one broker, one database, one consumer group."""
    made = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        made.append(Appliance(tmp_path / name, broker.bootstrap, DATABASE_URL=pg_url, **GROUP_ENV))
    yield made
    for appliance in made:
        appliance.stop()


def on_the_topic(bootstrap: str, topic: str, wanted: set[str]) -> dict[str, list[tuple[int, int]]]:
    """Where each wanted request id's http_response events are on the topic (partition,
    offset), read from the start by a group of its own: tells a loss by the broker or the
    producer (not there) from one by the consumer (there, but no row)."""
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"diagnose-{time.time_ns()}",
                       "auto.offset.reset": "earliest", "enable.partition.eof": True})
    reader.subscribe([topic])
    found: dict[str, list[tuple[int, int]]] = {request_id: [] for request_id in wanted}
    ended, deadline = set(), time.monotonic() + 30
    while time.monotonic() < deadline and len(ended) < 4:
        msg = reader.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            ended.add(msg.partition())
            continue
        event = json.loads(msg.value())
        if event.get("event_type") == "http_response" and event.get("request_id") in found:
            found[event["request_id"]].append((msg.partition(), msg.offset()))
    reader.close()
    return found


def exactly_once(appliance: Appliance, answered: list[str], timeout: float = 90) -> None:
    """Every answered request has exactly one response row, and there are no others."""
    try:
        appliance.wait_rows("http_responses", len(answered), timeout)
    except AssertionError as exc:
        missing = set(answered) - set(appliance.request_ids("http_responses"))
        where = on_the_topic(appliance.env["KAFKA_BROKERS"], GROUP_ENV["KAFKA_TOPIC_EVENTS"], missing)
        raise AssertionError(f"missing rows {sorted(missing)[:20]}; on the topic at: {where}\n"
                             f"{exc}") from None
    ids = appliance.request_ids("http_responses")
    print(f"answered {len(answered)}, response rows {len(ids)}, duplicates {len(ids) - len(set(ids))}")
    assert len(ids) == len(set(ids)), "duplicate rows"
    assert set(ids) == set(answered) and len(ids) == len(answered)


def assigned(appliance: Appliance) -> int:
    """Partitions the appliance's consumer holds, from its own report."""
    report = appliance.data_dir / "consumer-state.json"
    try:
        return len(json.loads(report.read_text()).get("assigned_partitions", []))
    except (OSError, ValueError):
        return 0


def test_two_appliances_share_the_partitions_and_a_killed_consumer_loses_nothing(pair):
    a, b = pair
    a.start()
    b.start_api()
    wait_until(lambda: assigned(a) == 4, 60, 0.2, what="A's consumer holding all 4 partitions")
    loads = [Load(a.port, "via-a", connections=2, rate=60).start(),
             Load(b.port, "via-b", connections=2, rate=60).start()]
    time.sleep(3)
    b.consumer.start()  # joins: the partitions are shared
    wait_until(lambda: assigned(a) + assigned(b) == 4 and assigned(b) > 0, 60, 0.2,
               what="the partitions shared between A and B")
    time.sleep(3)
    a.consumer.kill()  # kill -9 mid-load: B takes A's partitions once A's session expires
    wait_until(lambda: assigned(b) == 4, 60, 0.2, what="B holding all 4 partitions")
    time.sleep(3)
    answered = [request_id for load in loads for request_id in load.stop()]
    assert len(answered) > 500
    exactly_once(b, answered)


def test_postgresql_stopped_for_20_s_under_load_loses_nothing_and_never_shows_the_password(
        tmp_path, broker, postgres, pg_url):
    appliance = Appliance(tmp_path, broker.bootstrap, DATABASE_URL=pg_url, STATUS_INTERVAL="1",
                          **GROUP_ENV).start()
    agent = appliance._process("agent").start()
    try:
        load = Load(appliance.port, "outage", connections=2, rate=80).start()
        appliance.wait_rows("http_responses", 50, 60)
        postgres.stop()
        time.sleep(5)
        during = {path: appliance.request("GET", path) for path in ("/status", "/events")}
        time.sleep(15)
        postgres.start()
        answered = load.stop()
        exactly_once(appliance, answered)
    finally:
        appliance.stop()
        agent.stop()
        if not postgres.running:
            postgres.start()
    status, events = during["/status"], during["/events"]
    assert status[0] == 200 and status[1]["components"]["database"]["state"] == "DOWN", status
    assert events[0] == 503 and "events database not readable" in events[1]["error"], events
    seen = "".join([json.dumps(status[1]), json.dumps(events[1]), appliance.api.output(),
                    appliance.consumer.output(), agent.output()])
    assert "database not usable" in seen or "database write failed" in seen  # it was noticed
    assert postgres.PASSWORD not in seen and quote(postgres.PASSWORD, safe="") not in seen

"""The embedded pipeline under `up`: it keeps up under sustained load, recycles the broker
without losing an event, notices a stalled consumer, and stops with a backlog losing nothing.

The embedded broker lists every record batch of a partition on each fetch, within the fetch's
wait budget, and answers empty once that takes longer (docs/embedded-broker.md). Producing
batches of one or two events (linger.ms=5), a few hundred requests per second made a partition
collapse after ~3 minutes here with the 10 ms fetch wait of the time. These tests cut the
consumer's fetch wait to 3 ms (KAFKA_FETCH_WAIT_MAX_MS, passed to librdkafka), which brings that
point within ~1 minute, and then check exact counts: every answered request is one row, and the
consumer is caught up right after the load.
"""

from __future__ import annotations

import http.client
import re
import signal
import sqlite3
import threading
import time
import urllib.request

import pytest
from confluent_kafka import Producer
from procs import AUTHORIZATION, Process, wait_until
from test_appliance_e2e import appliance, send  # noqa: F401 (appliance is the fixture)

from appliance.schema import events

pytestmark = [pytest.mark.e2e, pytest.mark.broker]
RATE = 400  # requests per second, in all
SECONDS = 90
CONNECTIONS = 4


def paced_load(port: int, prefix: str, rate: float, seconds: float) -> list[str]:
    """GET / at ``rate`` per second from CONNECTIONS keep-alive connections; the request ids
    of the answers that were 200."""
    answered: list[str] = []
    deadline = time.monotonic() + seconds
    interval = CONNECTIONS / rate

    def worker(number: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        next_at, sent = time.monotonic() + number * interval / CONNECTIONS, 0
        while next_at < deadline:
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            request_id = f"{prefix}-{number}-{sent}"
            sent += 1
            conn.request("GET", "/", headers={"X-Request-ID": request_id})
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                answered.append(request_id)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answered


def assert_exactly_once(app, prefix: str, answered: list[str], timeout: float = 30) -> None:
    """http_responses holds one row per answered request id with ``prefix``, and no other."""
    def stored() -> list[str]:
        return [r[0] for r in app.rows(
            f"SELECT request_id FROM http_responses WHERE request_id LIKE '{prefix}-%'")]

    try:
        wait_until(lambda: len(stored()) >= len(answered), timeout, 0.5,
                   "every answered request persisted")
    finally:
        rows = stored()
        missing = set(answered) - set(rows)
        assert not missing, f"{len(missing)} of {len(answered)} answered requests have no row"
    assert len(rows) == len(set(rows)) == len(answered), "duplicate or unexpected rows"


def caught_up(app) -> bool:
    kafka = app.get("/kafka/status")[1]
    consumer = app.status()["components"]["process.consumer"]
    return kafka["unconfirmed"] == 0 and consumer["data"].get("lag") == 0


def test_minutes_of_steady_load_end_with_every_request_a_row_and_nothing_waiting(appliance):  # noqa: F811
    app = appliance(KAFKA_FETCH_WAIT_MAX_MS="3")
    answered = paced_load(app.port, "sustain", RATE, SECONDS)
    assert len(answered) > 0.9 * RATE * SECONDS, f"only {len(answered)} requests answered"
    assert_exactly_once(app, "sustain", answered)
    wait_until(lambda: caught_up(app), 10, 0.5, "no event waiting in the broker and lag 0")


def test_broker_recycled_for_its_batch_count_under_load_loses_nothing(appliance):  # noqa: F811
    app = appliance(EMBEDDED_BROKER_MAX_BATCHES="100")  # ~5-10 s of batches at linger.ms=50
    answered = paced_load(app.port, "batches", 200, 40)
    assert_exactly_once(app, "batches", answered, timeout=60)
    recycles = re.findall(r'"embedded broker recycled","reason":"batches"', app.up.output())
    assert len(recycles) >= 2, app.up.output()[-3000:]
    wait_until(lambda: caught_up(app), 20, 0.5, "nothing waiting after the last recycle")


def test_two_api_processes_each_write_their_own_partition_and_recycles_lose_nothing(appliance):  # noqa: F811
    app = appliance(WEB_PROCESSES="2", EMBEDDED_BROKER_MAX_BATCHES="100")
    # "every process UP" is the API's parent: a worker may still be starting, and unreachable
    def both_answer():
        status = app.get("/kafka/status")[1]
        return status if len(status.get("workers", [])) == 2 else None
    kafka = wait_until(both_answer, 20, 0.5, "both API workers answering /kafka/status")
    assert kafka["partitions"] == 2 and kafka["workers_unreachable"] == [], kafka
    answered = paced_load(app.port, "two", 200, 40)
    assert_exactly_once(app, "two", answered, timeout=60)
    recycles = re.findall(r'"embedded broker recycled","reason":"batches"', app.up.output())
    assert len(recycles) >= 2, app.up.output()[-3000:]
    wait_until(lambda: caught_up(app), 20, 0.5, "nothing waiting after the last recycle")


def tiny_batches(bootstrap: str, count: int) -> None:
    """``count`` events written one record batch each, as a producer without linger does, all
    to partition 0: the fetch cost that stalls the consumer is per partition, and the topic has
    one per API process (spread by key over two, a run did not stall)."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for i in range(count):
        event = events.make_event("load.tiny", f"tiny-{i}", "test", {"i": i})
        producer.produce("simple-time-events", events.encode(event), event["request_id"].encode(),
                         partition=0)
        producer.flush(5)


def test_a_stalled_consumer_is_reported_and_the_broker_recycled_and_nothing_lost(appliance):  # noqa: F811
    # With a 1 ms fetch wait, a few thousand one-event batches are more than the broker can list
    # within a fetch: its fetches come back empty, and the consumer stops making progress.
    app = appliance(KAFKA_FETCH_WAIT_MAX_MS="1")
    tiny_batches(f"127.0.0.1:{app.env['EMBEDDED_BROKER_PORT']}", 6000)
    during = send(app, 20, "stalled")
    wait_until(lambda: "stalled" in app.status()["components"]["process.consumer"]["detail"],
               60, 0.5, "process.consumer DOWN: stalled")
    assert app.status()["components"]["process.consumer"]["state"] == "DOWN"
    wait_until(lambda: '"reason":"stalled"' in app.up.output(), 30, 0.5, "a recycle for the stall")
    after = send(app, 20, "recovered")
    assert_exactly_once(app, "stalled", during, timeout=60)
    assert_exactly_once(app, "recovered", after)
    request = urllib.request.Request(f"http://127.0.0.1:{app.port}/metrics", headers=AUTHORIZATION)
    with urllib.request.urlopen(request, timeout=5) as response:
        metrics = response.read().decode()
    assert re.search(r"^consumer_stalls_total [1-9]", metrics, re.M), "the stall was not counted"


def test_down_with_the_consumer_behind_keeps_every_event_and_says_how_many(appliance):  # noqa: F811
    app = appliance()
    before = send(app, 10, "before-down")
    assert_exactly_once(app, "before-down", before)
    locker = sqlite3.connect(app.db_path, timeout=1, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # the consumer cannot write: its lag grows
    try:
        behind = send(app, 30, "behind")
        app.up.send(signal.SIGTERM)  # what `down` does
        assert app.up.proc.wait(90) == 0
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    output = app.up.output()
    left = re.search(r"stopping with (\d+) events not persisted yet", output)
    assert left and int(left.group(1)) == 2 * len(behind), output[-3000:]  # request + response
    # One line per API process (WEB_PROCESSES): each says what its own spool keeps.
    kept = re.findall(r"producer closed; (\d+) events kept in the spool", output)
    assert kept and sum(map(int, kept)) >= 2 * len(behind), output[-3000:]
    app.up = Process(app.up.args, app.env, app.tmp_path / "up2.log")
    app.start()
    assert_exactly_once(app, "behind", behind, timeout=60)

"""A pod rescheduled with the `single` layout's volume claim (deploy/kubernetes/overlays/single):
the appliance stopped while Kafka is down with events in its spool, and a new container started
on the same volume, as a StatefulSet does on another node. Every event the first one spooled is a
row once the second one runs, and none twice. The volume is a named volume of the engine; Kafka
is the embedded broker, stopped through supervisord."""

from __future__ import annotations

import uuid

import pytest
from containers import run
from test_container import DATA_DIR, HEALTHY_TIMEOUT, Container, free_port, poll

pytestmark = [pytest.mark.e2e]
REQUESTS = 40

ROWS = ("import json, sqlite3; db = sqlite3.connect('file:{d}/events.db?mode=ro', uri=True);"
        " print(json.dumps([r for (r,) in db.execute('SELECT request_id FROM http_responses')]))")
STOP_BROKER = ("from appliance import supervise; from appliance.core.config import Settings;"
               " supervise.client(Settings.from_env()).supervisor.stopProcess('broker'); print(1)")


def start(engine: list[str], image: str, volume: str) -> Container:
    box = Container(engine, f"sts-resched-{uuid.uuid4().hex[:8]}", free_port())
    result = box.engine_run("run", "-d", "--name", box.name, "-v", f"{volume}:{DATA_DIR}",
                            "-p", f"127.0.0.1:{box.port}:8080", image)
    assert result.returncode == 0, result.stdout + result.stderr
    box.wait_healthy(HEALTHY_TIMEOUT)
    return box


def kafka_state(box: Container) -> str | None:
    body = box.try_get("/status")
    return body["components"]["kafka"]["state"] if body else None


def request_ids(box: Container, prefix: str) -> list[str]:
    ids = []
    for n in range(REQUESTS):
        request_id = f"{prefix}-{n}"
        status, _ = box.get("/", **{"X-Request-ID": request_id})
        assert status == 200
        ids.append(request_id)
    return ids


def rows(box: Container) -> list[str]:
    return [r for r in box.python(ROWS.format(d=DATA_DIR)) if r.startswith(("before-", "down-"))]


def test_a_pod_stopped_with_kafka_down_delivers_its_spool_from_the_volume(engine, image):
    volume = f"sts-resched-{uuid.uuid4().hex[:8]}"
    boxes = []
    try:
        first = start(engine, image, volume)
        boxes.append(first)
        poll(lambda: kafka_state(first) == "UP", 60, "Kafka UP in the first pod")
        before = request_ids(first, "before")
        poll(lambda: len(rows(first)) == REQUESTS, 60, "the first requests persisted")
        assert first.python(STOP_BROKER) == 1
        poll(lambda: first.get("/kafka/status")[1].get("connected") is False, 30,
             "the producer to see Kafka gone")  # a 503 while it is gone
        down = request_ids(first, "down")
        status = first.get("/kafka/status")[1]
        assert status["spool_depth"] >= 2 * REQUESTS  # a request and a response event each
        stopped = first.engine_run("stop", "-t", "30", first.name, timeout=90)
        assert stopped.returncode == 0, stopped.stderr

        second = start(engine, image, volume)  # a new pod, the same claim
        boxes.append(second)
        poll(lambda: sorted(rows(second)) == sorted(before + down), 90,
             "every spooled event a row in the new pod",
             explain=lambda: f"rows: {len(rows(second))} of {2 * REQUESTS}")
        assert len(rows(second)) == len(set(rows(second))) == 2 * REQUESTS
    finally:
        for box in boxes:
            box.engine_run("rm", "--force", box.name, timeout=120)
        run([*engine, "volume", "rm", "--force", volume])

"""Dead letters as a workflow, against the whole appliance (`up`, embedded broker, SQLite):
poison produced to the real topic is listed by reason and shown with its bytes; a replay of one
whose cause is gone is persisted exactly once, and one that still fails stays one dead letter."""

from __future__ import annotations

import base64
import json
import sqlite3

import pytest
from confluent_kafka import Producer
from procs import run_cli, wait_until
from test_appliance_e2e import appliance  # noqa: F401  (the fixture)

from appliance.core.ids import new_id
from appliance.schema import events

pytestmark = [pytest.mark.e2e, pytest.mark.broker]
POISON = [b"\x00\xffnot json at all", b"[1, 2, 3]", json.dumps({"schema": 99}).encode()]


def produce(app, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": f"127.0.0.1:{app.env['EMBEDDED_BROKER_PORT']}"})
    for value in values:
        producer.produce("simple-time-events", value, b"poison")
    assert producer.flush(10) == 0


def letters(app, query: str = "") -> dict:
    status, body = app.get(f"/events/dead-letters?{query}")
    assert status == 200, body
    return body


def replay(app, **body) -> dict:
    status, answer, _ = app.request("POST", "/events/dead-letters/replay", body=json.dumps(body).encode(),
                                    headers={"Content-Type": "application/json"})
    assert status == 200, answer
    return answer


def test_poison_on_the_topic_is_listed_by_reason_and_shown_with_its_bytes(appliance):  # noqa: F811
    app = appliance()
    produce(app, POISON)
    wait_until(lambda: letters(app)["count"] == 3, 30, 0.5, "three dead letters")
    listed = letters(app)
    reasons = {group["reason"]: group["count"] for group in listed["by_reason"]}
    assert sum(reasons.values()) == 3 and any(r.startswith("not JSON") for r in reasons)
    assert any("unsupported schema 99" in r for r in reasons)
    only = letters(app, "reason=unsupported%20schema")["dead_letters"]
    assert len(only) == 1 and only[0]["preview"] == '{"schema": 99}'
    garbage = next(d for d in listed["dead_letters"] if d["reason"].startswith("not JSON"))
    status, one = app.get(f"/events/dead-letters/{garbage['id']}")
    assert status == 200
    assert base64.b64decode(one["raw_base64"]) == POISON[0] and one["raw_text"] is None
    page = letters(app, "limit=2")
    assert page["count"] == 2 and page["next"]
    rest = letters(app, f"limit=2&cursor={page['next']}")
    assert rest["count"] == 1 and rest["next"] is None
    ids = [d["id"] for d in page["dead_letters"] + rest["dead_letters"]]
    assert sorted(ids) == sorted(d["id"] for d in listed["dead_letters"])
    assert app.get("/events/dead-letters/999999")[0] == 404
    assert app.get("/events/dead-letters?reason=")[0] == 400
    cli = run_cli("dead-letters", "list", env=app.env)
    assert cli.returncode == 0, cli.stderr
    assert "unsupported schema 99" in cli.stdout and "\x00" not in cli.stdout


def test_a_replay_after_the_cause_is_fixed_is_persisted_once_and_a_poison_replay_stays_one_letter(appliance):  # noqa: F811
    app = appliance()
    # The database refuses one kind of row for a while: a trigger stands for the cause.
    db = sqlite3.connect(app.db_path, timeout=10)
    wait_until(lambda: db.execute("SELECT name FROM sqlite_master WHERE name='custom_events'").fetchone(),
               30, 0.5, "the schema")
    db.execute("CREATE TRIGGER refuse BEFORE INSERT ON custom_events WHEN NEW.event_type = "
               "'refused.for.now' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
    db.commit()
    status, accepted = app.publish("refused.for.now", {"n": 1})
    assert status == 202
    wait_until(lambda: letters(app)["count"] == 1, 30, 0.5, "the refused event as a dead letter")
    refused = letters(app)["dead_letters"][0]
    assert "the database refused it" in refused["reason"]
    produce(app, [POISON[0]])
    wait_until(lambda: letters(app)["count"] == 2, 30, 0.5, "the poison as a dead letter")
    poison = next(d for d in letters(app)["dead_letters"] if d["reason"].startswith("not JSON"))

    db.execute("DROP TRIGGER refuse")  # the cause is fixed
    db.commit()
    custom = f"SELECT COUNT(*) FROM custom_events WHERE event_id = '{accepted['event_id']}'"
    for _ in range(2):  # twice: a replay never duplicates a row
        answer = replay(app, id=refused["id"])
        assert answer["replayed"] == 1 and answer["ids"] == [refused["id"]]
        wait_until(lambda: app.rows(custom)[0][0] == 1, 30, 0.5, "the replayed event persisted")
    wait_until(lambda: letters(app, "reason=refused")["dead_letters"][0]["replay_outcome"] == "persisted",
               30, 0.5, "the dead letter marked replayed")

    cli = run_cli("dead-letters", "replay", "--id", str(poison["id"]), env=app.env)
    assert cli.returncode == 0 and "replayed 1 dead letter" in cli.stdout, cli.stderr
    wait_until(lambda: next(d for d in letters(app)["dead_letters"] if d["id"] == poison["id"])
               ["replay_outcome"] == "failed", 30, 0.5, "the poison's replay back, failed")
    assert letters(app)["count"] == 2  # still one dead letter each, never a second
    assert app.rows("SELECT COUNT(*) FROM dead_letters") == [(2,)]
    assert app.rows(custom) == [(1,)]
    marker = new_id()  # and the pipeline goes on: a fresh event after all this is a row
    produce(app, [events.encode(events.make_event("after.replay", marker, "test", {}))])
    wait_until(lambda: app.rows(f"SELECT COUNT(*) FROM custom_events WHERE request_id = '{marker}'")
               == [(1,)], 30, 0.5, "a new event persisted")
    db.close()

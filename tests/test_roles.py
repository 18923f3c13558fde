"""Roles: `up --programs` and APPLIANCE_PROGRAMS choose the supervised programs. Checked with
real supervisord: one appliance runs the embedded broker, the API and the agent, a second one
only the consumer and the agent, writing into the first one's database (one host, so one
SQLite file can be shared through DB_PATH)."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import uuid
from pathlib import Path

import pytest
from procs import (
    Appliance,
    Process,
    broker_binary,
    free_port,
    launch_api,
    run_cli,
    wait_until,
)

# --- bad choices: one line, exit 2, nothing started or created -------------------------------


@pytest.mark.parametrize(("args", "env", "line"), [
    (["--programs", "api,web"], {},
     "simple-time-service: configuration error: --programs='api,web' is invalid: expected a "
     "comma-separated list of api, consumer, agent, broker, e.g. api,consumer,agent"),
    ([], {"APPLIANCE_PROGRAMS": "everything"},
     "simple-time-service: configuration error: APPLIANCE_PROGRAMS='everything' is invalid: "
     "expected a comma-separated list of api, consumer, agent, broker, e.g. api,consumer,agent"),
    (["--programs", "broker,consumer"], {"KAFKA_BROKERS": "kafka:9092"},
     "simple-time-service: configuration error: --programs='broker,consumer' is invalid: the "
     "broker program runs only with KAFKA_BROKERS=embedded (KAFKA_BROKERS='kafka:9092')"),
    ([], {"APPLIANCE_PROGRAMS": "broker"},
     "simple-time-service: configuration error: APPLIANCE_PROGRAMS='broker' is invalid: the "
     "broker program runs only with KAFKA_BROKERS=embedded (KAFKA_BROKERS='')"),
])
def test_a_bad_choice_of_programs_is_one_line_and_exit_2(tmp_path, args, env, line):
    data_dir = tmp_path / "data"
    result = run_cli("up", *args, env={"DATA_DIR": str(data_dir), **env})
    assert (result.returncode, result.stderr, result.stdout) == (2, line + "\n", "")
    assert not data_dir.exists()


def test_an_unusable_data_dir_is_one_line_and_exit_2(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_cli("up", env={"DATA_DIR": str(blocker / "data")})
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"simple-time-service: DATA_DIR={blocker / 'data'} is not usable (")
    assert result.stderr.endswith(f"): expected a directory that uid {os.getuid()} can write\n")
    assert len(result.stderr.splitlines()) == 1


def test_up_help_names_the_programs_option():
    result = run_cli("up", "--help")
    assert result.returncode == 0
    assert "--programs LIST" in result.stdout and "APPLIANCE_PROGRAMS" in result.stdout


def test_an_api_without_an_agent_says_so_in_status(tmp_path):
    api = launch_api(tmp_path / "data", {"APPLIANCE_PROGRAMS": "api"})
    try:
        reply = api.get("/status")
    finally:
        api.stop()
    body = reply.json()
    assert reply.status == 200
    assert body["agent"] == {"state": "DISABLED", "detail": "the agent is not run by this "
                                                            "appliance (APPLIANCE_PROGRAMS=api)"}
    assert set(body["components"]) == {"disk"}
    assert body["overall"] == body["components"]["disk"]["state"] == "UP"
    assert body["stale"] is True


# --- two appliances, two roles, real supervisord ---------------------------------------------


class Role(Appliance):
    """`simple-time-service up` with its own DATA_DIR and PORT; HTTP only if it runs the API."""

    def __init__(self, directory: Path, args: list[str], brokers: str, **env: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        super().__init__(directory, brokers, STATUS_INTERVAL="1", LOG_LEVEL="WARNING", **env)
        self.up = Process([sys.executable, "-m", "appliance", "up", *args], self.env,
                          directory / "up.log")

    def cli(self, command: str):
        return run_cli(command, env={"DATA_DIR": str(self.data_dir)})

    def programs(self, ps_output: str) -> list[list[str]]:
        """NAME and STATE of each row of `ps`."""
        return [line.split()[:2] for line in ps_output.splitlines()[1:] if not line.startswith("not run")]

    def components(self) -> dict[str, tuple[str, str]]:
        """The agent's latest states, read from its status database."""
        path = self.data_dir / "status.db"
        if not path.exists():
            return {}
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return {name: (state, detail) for name, state, detail in
                    db.execute("SELECT name, state, detail FROM component_state")}
        except sqlite3.OperationalError:  # tables not created yet
            return {}
        finally:
            db.close()

    def explain(self) -> str:
        return f"{json.dumps(self.components(), indent=1)}\n{self.up.output()[-3000:]}"


@pytest.fixture
def roles(tmp_path):
    started: list[Role] = []

    def start(name: str, args: list[str], brokers: str, **env: str) -> Role:
        role = Role(tmp_path / name, args, brokers, **env)
        started.append(role)
        role.up.start()
        return role

    yield start
    for role in reversed(started):
        role.up.stop(timeout=60)


@pytest.mark.e2e
@pytest.mark.broker
def test_an_api_appliance_and_a_consumer_appliance_share_the_work(tmp_path, roles):
    broker_binary()  # fail in CI / skip locally when the embedded broker cannot exist
    broker_port = free_port()
    front = roles("front", ["--programs", "broker,api,agent"], "embedded",
                  EMBEDDED_BROKER_PORT=str(broker_port))
    back = roles("back", [], f"127.0.0.1:{broker_port}", APPLIANCE_PROGRAMS="consumer,agent",
                 DB_PATH=str(front.data_dir / "events.db"))

    wait_until(lambda: front._healthy(front.up), 30, 0.2, "the front's /healthz")
    ids = [f"roles-{n}-{uuid.uuid4().hex[:6]}" for n in range(20)]
    for request_id in ids:
        assert front.get("/", **{"X-Request-ID": request_id})[0] == 200
    front.wait_rows("http_requests", len(ids))  # written by the back's consumer
    assert sorted(front.request_ids("http_requests")) == sorted(ids)

    # The front: what it runs is UP, the consumer it leaves to the back is not DOWN.
    def front_settled() -> dict | None:
        status = front.get("/status")[1]
        return status if status.get("overall") == "UP" else None

    status = wait_until(front_settled, 60, 0.5, "the front's /status overall UP")
    components = status["components"]
    for name in ("process.broker", "process.api", "process.agent", "api", "kafka", "spool"):
        assert components[name]["state"] == "UP", (name, components[name])
    assert (components["process.consumer"]["state"], components["process.consumer"]["detail"]) == (
        "DISABLED", "not run by this appliance (APPLIANCE_PROGRAMS=broker,agent,api)")

    # The back: consumer and agent only; the agent says so, and nothing is DOWN.
    wait_until(lambda: back.components().get("process.consumer", ("",))[0] == "UP", 60, 0.5,
               "the back's consumer UP")
    states = back.components()
    not_run = ("DISABLED", "not run by this appliance (APPLIANCE_PROGRAMS=consumer,agent)")
    assert states["process.api"] == not_run and states["api"] == not_run
    assert states["spool"] == not_run
    assert states["process.broker"] == ("DISABLED", "external or no Kafka")
    assert states["process.agent"][0] == "UP"
    assert not [name for name, (state, _) in states.items() if state == "DOWN"], back.explain()

    front_ps, back_ps = front.cli("ps"), back.cli("ps")
    assert front_ps.returncode == 0, front_ps.stdout + front_ps.stderr
    assert front.programs(front_ps.stdout) == [["agent", "RUNNING"], ["api", "RUNNING"],
                                               ["broker", "RUNNING"]]
    assert front_ps.stdout.splitlines()[-1] == "not run by this appliance: consumer"
    assert back_ps.returncode == 0, back_ps.stdout + back_ps.stderr
    assert back.programs(back_ps.stdout) == [["agent", "RUNNING"], ["consumer", "RUNNING"]]
    assert back_ps.stdout.splitlines()[-1] == "not run by this appliance: broker, api"
    assert "[program:api]" not in (back.data_dir / "supervisord.conf").read_text()

    down = back.cli("down")
    assert (down.returncode, down.stdout) == (0, "stopped\n"), down.stderr
    assert back.up.proc.wait(30) == 0
    assert front.get("/healthz")[0] == 200  # the front goes on

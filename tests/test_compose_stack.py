"""deploy/compose.yaml started for real with podman-compose: two appliances, one Kafka-protocol
broker, PostgreSQL and Prometheus, the third-party images swapped for images built here
(tests/compose/compose.test.yaml says how and why). Load through both appliances, SIGKILL one of
them mid-load and start it again: every answered request is exactly one row in PostgreSQL, and
Prometheus has scraped both."""

from __future__ import annotations

import json
import os
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from containers import build, run, tail
from deploy_helpers import DEPLOY, tool
from procs import Load, wait_until

pytestmark = [pytest.mark.e2e]
HERE = Path(__file__).resolve().parent / "compose"
TOKEN = "compose-stack-token"
UP_TIMEOUT = 180.0  # seconds until both appliances report Kafka and the database UP
ROWS_TIMEOUT = 120.0  # seconds for the killed appliance's spool to become rows


class Stack:
    def __init__(self, engine: list[str], images: dict[str, str]) -> None:
        self.engine = engine
        self.project = f"ststest{uuid.uuid4().hex[:6]}"
        self.env = {**os.environ, **images, "POSTGRES_PASSWORD": "composepw1", "API_TOKEN": TOKEN}

    def compose(self, *args: str, timeout: float = 300) -> Any:
        return run([tool("podman-compose"), "--podman-path", self.engine[0], "-p", self.project,
                    "-f", str(DEPLOY / "compose.yaml"), "-f", str(HERE / "compose.test.yaml"),
                    *args], timeout=timeout, env=self.env)

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def port(self, service: str, inside: int) -> int:
        result = run([*self.engine, "port", self.container(service), str(inside)])
        assert result.returncode == 0, result.stderr
        return int(result.stdout.split(":")[-1])

    def get(self, service: str, path: str, inside: int = 8080) -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port(service, inside)}{path}",
                                         headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.load(reply)

    def up(self, service: str, components=("kafka", "database", "process.consumer")) -> bool:
        try:
            states = self.get(service, "/status")["components"]
        except (OSError, ValueError):
            return False
        return all(states.get(name, {}).get("state") == "UP" for name in components)

    def psql(self, sql: str) -> list[str]:
        result = run([*self.engine, "exec", self.container("postgres"), "psql", "-h", "/tmp", "-U",
                      "sts", "-d", "sts", "-At", "-c", sql])
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    def logs(self, service: str) -> str:
        result = run([*self.engine, "logs", self.container(service)])
        return tail(result.stdout + result.stderr, 40)


@pytest.fixture(scope="module")
def stack(engine: list[str], image: str) -> Iterator[Stack]:
    images = {"STS_IMAGE": image,
              "STS_POSTGRES_IMAGE": build(engine, "localhost/sts-compose-postgres:test", HERE,
                                          "-f", str(HERE / "postgres.Dockerfile"),
                                          what="postgres image build s"),
              "STS_PROMETHEUS_IMAGE": build(engine, "localhost/sts-compose-prometheus:test", HERE,
                                            "-f", str(HERE / "prometheus.Dockerfile"),
                                            what="prometheus image build s")}
    stack = Stack(engine, images)
    try:
        result = stack.compose("up", "-d")
        assert result.returncode == 0, tail(result.stdout + result.stderr)
        for service in ("appliance-1", "appliance-2"):
            wait_until(lambda: stack.up(service), UP_TIMEOUT, 1.0,
                       f"{service}: Kafka, the database and its consumer UP")
        yield stack
    finally:
        stack.compose("down", "-v", "-t", "10", timeout=300)


def test_a_killed_appliance_loses_nothing_and_prometheus_scrapes_both(stack):
    ports = {service: stack.port(service, 8080) for service in ("appliance-1", "appliance-2")}
    loads = [Load(port, service, connections=2, rate=60).start() for service, port in ports.items()]
    time.sleep(8)
    killed = run([*stack.engine, "kill", "--signal", "KILL", stack.container("appliance-1")])
    assert killed.returncode == 0, killed.stderr
    time.sleep(5)  # appliance-2 alone; requests to appliance-1 fail and are not counted
    started = run([*stack.engine, "start", stack.container("appliance-1")])
    assert started.returncode == 0, started.stderr
    wait_until(lambda: stack.up("appliance-1"), UP_TIMEOUT, 1.0, "appliance-1 back")
    time.sleep(5)
    answered = [request_id for load in loads for request_id in load.stop()]
    assert loads[0].failures > 0  # the kill did cut appliance-1's requests off
    assert len(answered) > 500

    def rows() -> list[str]:
        return stack.psql("SELECT request_id FROM http_responses")

    try:
        wait_until(lambda: len(rows()) >= len(answered), ROWS_TIMEOUT, 1.0, "a row per request")
    except AssertionError:
        pass  # the comparison below says what is missing
    stored = rows()
    missing, extra = set(answered) - set(stored), set(stored) - set(answered)
    assert not missing and len(stored) == len(set(stored)), (
        f"{len(stored)} rows for {len(answered)} answered, {len(missing)} missing "
        f"(e.g. {sorted(missing)[:3]}), {len(stored) - len(set(stored))} duplicated\n"
        f"{stack.logs('appliance-1')}")
    # A row beyond the answers: a request appliance-1 recorded whose answer died with it.
    assert extra <= set(loads[0].unanswered), sorted(extra - set(loads[0].unanswered))[:3]
    assert len(extra) <= 2 * loads[0].connections
    requests = stack.psql("SELECT request_id FROM http_requests")
    assert sorted(requests) == sorted(stored)

    prometheus = stack.port("prometheus", 9090)
    with urllib.request.urlopen(f"http://127.0.0.1:{prometheus}/api/v1/query?query="
                                "sum+by+(instance)+(http_requests_total)", timeout=10) as reply:
        scraped = {r["metric"]["instance"] for r in json.load(reply)["data"]["result"]}
    assert scraped == {"appliance-1:8081", "appliance-2:8081"}

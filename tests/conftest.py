"""Shared fixtures: an in-process WSGI client, and real server processes (tests/procs.py).

In-process tests build a fresh app per test (bottle's ``test/tools.py`` habit); integration tests
start the real ``python -m appliance api`` process, wait until it answers, and always terminate
it, even when the test fails (datasette's ``conftest.py`` habit).
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping
from wsgiref.util import setup_testing_defaults

import containers
import dataset
import pytest
from procs import REPO, ApiProcess, Broker, Postgres, free_port, launch_api

REPO_ROOT = REPO
UUID7_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"  # use re.fullmatch


# --- in-process WSGI client ---------------------------------------------------------------


@dataclass
class WsgiResponse:
    status: int
    reason: str
    headers: Message  # case-insensitive lookup, like a real client's
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call_wsgi(app: Callable, method: str = "GET", path: str = "/", *,
              headers: Mapping[str, str] | None = None, body: bytes = b"",
              remote_addr: str = "127.0.0.1", query: str = "") -> WsgiResponse:
    """Drive a WSGI app once, the way Waitress would, and collect the whole response."""
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ.update({
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
        "REMOTE_ADDR": remote_addr, "wsgi.input": io.BytesIO(body),
    })
    if body:
        environ["CONTENT_LENGTH"] = str(len(body))
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[key] = value
        else:
            environ[f"HTTP_{key}"] = value
    captured: dict[str, Any] = {}

    def start_response(status: str, response_headers: list, exc_info=None):
        captured["status"] = status
        captured["headers"] = response_headers
        return lambda data: None

    result = app(environ, start_response)
    try:
        data = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    code, _, reason = captured["status"].partition(" ")
    message = Message()
    for name, value in captured["headers"]:
        message[name] = value
    return WsgiResponse(int(code), reason, message, data)


# --- real server processes (tests/procs.py) -------------------------------------------------


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ApiProcess]]:
    """Factory: ``start_server(TRUSTED_PROXIES="10.0.0.0/8")``; every process is stopped after."""
    started: list[ApiProcess] = []

    def start(**env: str) -> ApiProcess:
        server = launch_api(tmp_path / f"server{len(started)}", env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    """One default-configured server shared by read-only tests (loopback is a trusted proxy)."""
    server = launch_api(tmp_path_factory.mktemp("live_server"))
    try:
        yield server
    finally:
        server.stop()


# --- PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """One throwaway PostgreSQL cluster for the session (the Debian package's server). Not under
    pytest's tmp dir: run as the postgres user, the server could not enter root's 0700 dirs."""
    directory = Path(tempfile.mkdtemp(prefix="sts-postgres-"))
    server = Postgres(directory).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def pg_url(postgres: Postgres) -> str:
    """The DATABASE_URL of a new, empty database of its own."""
    return postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")


# --- the real broker ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def session_broker(tmp_path_factory: pytest.TempPathFactory):
    """One Tansu broker for tests that only need Kafka to be there (not to fail)."""
    broker = Broker(free_port(), tmp_path_factory.mktemp("broker") / "broker.log").start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A Tansu broker of the test's own, for tests that restart, stop or fill it."""
    server = Broker(free_port(), tmp_path / "broker.log").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka_live_server(tmp_path_factory: pytest.TempPathFactory, session_broker) -> Iterator[ApiProcess]:
    """A server with Kafka up, so every documented operation can answer without a 5xx, and a
    few events of each kind in its database, so every filter reads real rows."""
    directory = tmp_path_factory.mktemp("kafka_live_server")
    dataset.small(directory / "events.db")
    # MAX_DELAY: the delays schemathesis asks for stay short (test_openapi_contract.LIVE_MAX_DELAY).
    server = launch_api(directory, {"KAFKA_BROKERS": session_broker.bootstrap, "MAX_DELAY": "0.5"})
    try:
        yield server
    finally:
        server.stop()


# --- containers: one engine and one appliance image for the whole session ---------------------


@pytest.fixture(scope="session")
def engine() -> list[str]:
    return containers.engine_command()


@pytest.fixture(scope="session")
def image(engine: list[str]) -> str:
    return containers.build_appliance(engine)

"""Shared fixtures: an in-process WSGI client, free ports, and real server processes.

In-process tests build a fresh app per test (bottle's ``test/tools.py`` habit); integration tests
start the real ``python -m appliance api`` process, wait until it answers, and always terminate
it, even when the test fails (datasette's ``conftest.py`` habit).
"""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping
from wsgiref.util import setup_testing_defaults

import pytest

from appliance.core.config import VARIABLES

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
STARTUP_TIMEOUT = 10.0  # seconds a server process gets to answer /healthz
STOP_TIMEOUT = 10.0  # seconds a server process gets to exit after SIGTERM before SIGKILL
UUID4_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"  # use re.fullmatch


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


# --- ports ----------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out for ``host``; free again once the socket closes."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


# --- real server processes ------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def clean_environment(overrides: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment without any appliance setting, plus ``overrides``.

    A developer's exported PORT or KAFKA_BROKERS must not change what the tests see.
    """
    ours = {name for name, _, _ in VARIABLES}
    env = {k: v for k, v in os.environ.items() if k not in ours and not k.startswith("KAFKA_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


@dataclass
class ServerProcess:
    """One ``python -m appliance api`` process; stdout and stderr go to files we can read."""

    host: str
    port: int
    proc: subprocess.Popen
    stdout_path: Path
    stderr_path: Path

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def request(self, method: str, path: str, *, headers: Mapping[str, str] | None = None,
                body: bytes | None = None, timeout: float = 5.0) -> Reply:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            response = conn.getresponse()
            reply = Reply(response.status, response.headers, response.read())
        finally:
            conn.close()
        return reply

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.request("GET", path, **kwargs)

    def raw(self, data: bytes, timeout: float = 5.0) -> bytes:
        """Send bytes over a plain socket and read until the server closes the connection."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
            sock.sendall(data)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    def wait_until_healthy(self, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode} before answering:\n"
                            f"{self.stderr()}\n{self.stdout()}")
            try:
                if self.get("/healthz", timeout=1).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        pytest.fail(f"server did not answer /healthz within {timeout} s:\n{self.stderr()}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait, SIGKILL as a last resort; safe to call twice."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def stdout(self) -> str:
        return self.stdout_path.read_text()

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def log_records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout().splitlines() if line.strip()]


def launch_server(directory: Path, env: Mapping[str, str] | None = None) -> ServerProcess:
    """Start a server on a free port with DATA_DIR=directory and wait until it is healthy."""
    overrides = {"HOST": "127.0.0.1", "DATA_DIR": str(directory), **(env or {})}
    overrides.setdefault("PORT", str(free_port(overrides["HOST"])))
    directory.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = directory / "stdout.log", directory / "stderr.log"
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "appliance", "api"], cwd=directory,
                                env=clean_environment(overrides), stdout=out, stderr=err)
    server = ServerProcess(overrides["HOST"], int(overrides["PORT"]), proc, stdout_path, stderr_path)
    try:
        server.wait_until_healthy()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: ``start_server(TRUSTED_PROXIES="10.0.0.0/8")``; every process is stopped after."""
    started: list[ServerProcess] = []

    def start(**env: str) -> ServerProcess:
        server = launch_server(tmp_path / f"server{len(started)}", env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One default-configured server shared by read-only tests (loopback is a trusted proxy)."""
    server = launch_server(tmp_path_factory.mktemp("live_server"))
    try:
        yield server
    finally:
        server.stop()


def run_cli(*args: str, env: Mapping[str, str] | None = None,
            timeout: float = 20.0) -> subprocess.CompletedProcess:
    """Run the installed console script, as an operator would."""
    script = VENV_BIN / "simple-time-service"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "appliance"]
    return subprocess.run([*command, *args], capture_output=True,
                          text=True, env=clean_environment(env or {}), timeout=timeout)


# --- the real broker ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def session_broker(tmp_path_factory: pytest.TempPathFactory):
    """One Tansu broker for tests that only need Kafka to be there (not to fail)."""
    from procs import Broker

    broker = Broker(free_port(), tmp_path_factory.mktemp("broker") / "broker.log").start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_live_server(tmp_path_factory: pytest.TempPathFactory, session_broker) -> Iterator[ServerProcess]:
    """A server with Kafka up, so every documented operation can answer without a 5xx."""
    server = launch_server(tmp_path_factory.mktemp("kafka_live_server"),
                           {"KAFKA_BROKERS": session_broker.bootstrap})
    try:
        yield server
    finally:
        server.stop()

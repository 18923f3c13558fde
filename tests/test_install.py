"""install.sh as an operator runs it: into a virtual environment, and with --system as a service.

Each install runs pip (tens of seconds, less with pip's cache), so there are three: a plain one,
a --system one and its re-run as an upgrade. The --system test installs into a temporary prefix,
data directory and unit directory with a throw-away service user, runs the appliance as that user
without systemd, and removes everything afterwards, even when it fails.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from appliance.core.config import VARIABLES

REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "install.sh"
IN_CI = os.environ.get("CI", "").lower() == "true"
VERSION = (REPO / "VERSION").read_text().strip()
INSTALL_TIMEOUT = 900.0  # seconds for one install.sh run with cold pip downloads
APPLIANCE_TIMEOUT = 60.0  # seconds for the installed appliance to answer with Kafka UP


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the appliance's settings or the test venv's activation."""
    ours = {name for name, _, _ in VARIABLES}
    env = {k: v for k, v in os.environ.items()
           if k not in ours and not k.startswith("KAFKA_") and k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return {**env, **extra}


def install(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(INSTALL), *map(str, args)], capture_output=True, text=True,
                          timeout=INSTALL_TIMEOUT, env=env or clean_env())


def succeeded(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"install.sh exited {result.returncode}:\n{result.stdout}{result.stderr}"
    return result.stdout


def version_of(prefix: Path) -> str:
    result = subprocess.run([str(prefix / "bin" / "simple-time-service"), "version"],
                            capture_output=True, text=True, timeout=30, env=clean_env())
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- checks that need no pip ----------------------------------------------------------------


def test_missing_python_is_named_and_nothing_is_created(tmp_path: Path) -> None:
    result = install("--prefix", tmp_path / "venv", env=clean_env(PYTHON="/nonexistent/python3"))
    assert result.returncode != 0
    assert "/nonexistent/python3 not found" in result.stderr
    assert "Python >= 3.11" in result.stderr
    assert not (tmp_path / "venv").exists()


@pytest.mark.parametrize("args, message", [
    (["--no-such-option"], "unknown option '--no-such-option'"),
    (["--prefix"], "--prefix needs a value"),
    (["--purge"], "--purge goes with --uninstall"),
    (["--system", "--dev"], "--dev is for a checkout"),
    (["--system", "--prefix", "relative/dir"], "--prefix must be an absolute path"),
])
def test_bad_options_stop_with_a_message(args: list[str], message: str) -> None:
    result = install(*args)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_system_refuses_a_system_directory_as_data_dir(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("--system needs root")
    result = install("--system", "--prefix", tmp_path / "opt", "--data-dir", "/var/lib",
                     "--unit-dir", tmp_path / "units", "--user", "sts-never-created")
    assert result.returncode != 0
    assert "is a system directory" in result.stderr
    assert not (tmp_path / "opt").exists() and not (tmp_path / "units").exists()


# --- a plain install ------------------------------------------------------------------------


@pytest.mark.e2e
def test_plain_install_into_a_prefix_gives_a_working_command(tmp_path: Path) -> None:
    prefix = tmp_path / "venv"
    output = succeeded(install("--prefix", prefix))
    assert f"installed {VERSION} into {prefix}" in output
    assert version_of(prefix) == VERSION
    assert not (prefix / "bin" / "tansu").exists()  # the embedded broker only on request


# --- --system: install, run as the service user, upgrade, uninstall, purge --------------------


@pytest.fixture
def system_paths() -> Iterator[dict[str, Any]]:
    """A world-traversable temporary tree (the service user must reach the program) and a user
    name; both are removed afterwards whatever happened."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        if IN_CI:
            pytest.fail("install.sh --system is tested as root with useradd in CI")
        pytest.skip("install.sh --system needs root and useradd")
    base = Path(tempfile.mkdtemp(prefix="sts-install-"))
    base.chmod(0o755)
    user = f"sts-test-{uuid.uuid4().hex[:8]}"
    try:
        yield {"base": base, "user": user, "prefix": base / "opt", "data": base / "data",
               "units": base / "units"}
    finally:
        if subprocess.run(["id", "-u", user], capture_output=True).returncode == 0:
            subprocess.run(["userdel", user], capture_output=True)
        subprocess.run(["groupdel", user], capture_output=True)  # if userdel left it
        shutil.rmtree(base, ignore_errors=True)


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def unit_settings(path: Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def run_printed_start_command(output: str, prefix: Path, data: Path, user: str) -> None:
    """Start the appliance with the command install.sh printed (a shell line that runs it as the
    service user), wait until Kafka is UP, check who runs it, and stop it."""
    line = next(line for line in output.splitlines() if "start it with: " in line)
    command = line.split("start it with: ", 1)[1]
    port = free_port()
    env = clean_env(PORT=str(port), EMBEDDED_BROKER_PORT=str(free_port()))
    log = data / "appliance.log"
    proc = subprocess.Popen(["bash", "-c", command], env=env)
    try:
        deadline, body = time.monotonic() + APPLIANCE_TIMEOUT, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                    body = json.loads(resp.read())
                if body["kafka_status"] == "UP":
                    break
            except OSError:
                pass
            time.sleep(0.3)
        assert body and body["kafka_status"] == "UP", f"{body}\n{log.read_text()[-4000:]}"
        supervisord = int((data / "supervisord.pid").read_text())
        uid_line = next(line for line in Path(f"/proc/{supervisord}/status").read_text().splitlines()
                        if line.startswith("Uid:"))
        assert set(uid_line.split()[1:]) == {str(pwd.getpwnam(user).pw_uid)}
    finally:
        subprocess.run([str(prefix / "bin" / "simple-time-service"), "down"], capture_output=True,
                       timeout=120, env=clean_env(DATA_DIR=str(data)))
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == 0, log.read_text()[-4000:]
    assert "stopped: api (exit status 0)" in log.read_text()


def test_system_refuses_an_interpreter_the_service_user_cannot_run(system_paths: dict[str, Any]) -> None:
    """Like a pyenv under /root: root can run it, the service user cannot."""
    system_python = Path("/usr/bin/python3").resolve()
    if not system_python.is_file():
        pytest.skip("needs /usr/bin/python3 to copy")
    private = system_paths["base"] / "private"
    private.mkdir(mode=0o700)
    shutil.copy2(system_python, private / "python3")
    result = install("--system", "--prefix", system_paths["prefix"], "--data-dir", system_paths["data"],
                     "--unit-dir", system_paths["units"], "--user", system_paths["user"],
                     env=clean_env(PYTHON=str(private / "python3")))
    assert result.returncode != 0
    assert f"{system_paths['user']} cannot run {private / 'python3'}" in result.stderr, result.stderr
    assert not system_paths["prefix"].exists() and not system_paths["units"].exists()


@pytest.mark.e2e
def test_system_install_upgrade_uninstall_and_purge(system_paths: dict[str, Any]) -> None:
    user, prefix, data, units = (system_paths[k] for k in ("user", "prefix", "data", "units"))
    args = ["--system", "--prefix", prefix, "--data-dir", data, "--unit-dir", units, "--user", user]
    unit = units / "simple-time-service.service"

    output = succeeded(install(*args))
    assert version_of(prefix) == VERSION
    account = pwd.getpwnam(user)
    assert account.pw_uid < 1000 and account.pw_shell in ("/usr/sbin/nologin", "/bin/false")
    info = data.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (account.pw_uid, 0o750)
    assert os.access(prefix / "bin" / "tansu", os.X_OK)
    settings = unit_settings(unit)
    assert settings["Type"] == ["simple"] and settings["User"] == [user]
    assert f"DATA_DIR={data}" in settings["Environment"]
    assert f"DATA_DIR_GROUP={user}" in settings["Environment"]  # so DATA_DIR stays 0750
    assert "KAFKA_BROKERS=embedded" in settings["Environment"]
    assert f"CALF_TANSU_BIN={prefix}/bin/tansu" in settings["Environment"]
    assert settings["ExecStart"] == [f"{prefix}/bin/simple-time-service up"]
    assert settings["KillSignal"] == ["SIGTERM"] and settings["KillMode"] == ["mixed"]
    assert int(settings["TimeoutStopSec"][0]) >= 60
    assert settings["Restart"] == ["on-failure"]
    log = data / "appliance.log"  # where the unit sends the output: it must belong to the user
    assert settings["StandardOutput"] == [f"append:{log}"] and log.stat().st_uid == account.pw_uid
    if not Path("/run/systemd/system").is_dir():
        assert re.search(rf"start it with: runuser -u {user} -- .* {prefix}/bin/simple-time-service up",
                         output), output
        run_printed_start_command(output, prefix, data, user)

    (data / "marker").write_text("kept")
    output = succeeded(install(*args))
    assert f"reusing virtual environment {prefix}" in output and f"reusing user {user}" in output
    assert version_of(prefix) == VERSION
    assert (data / "marker").read_text() == "kept"
    assert (data / "events.db").exists() or Path("/run/systemd/system").is_dir()

    output = succeeded(install(*args, "--uninstall"))
    assert not prefix.exists() and not unit.exists() and not user_exists(user)
    assert (data / "marker").read_text() == "kept"
    assert "kept the data" in output

    succeeded(install(*args, "--uninstall", "--purge"))
    assert not data.exists()

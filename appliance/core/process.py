"""What every program of the appliance does around its work.

JSON logs on stdout, metrics into METRICS_DIR, tracing when configured, and SIGTERM/SIGINT
turned into a stop event (uvicorn's should_exit: the handler only records the signal; the
program's loop notices). A startup error is one line on stderr and exit code 2, never a
traceback.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Callable

from appliance.core import logs, metrics, permissions, sensors, tracing
from appliance.core.config import Settings
from appliance.core.version import __version__


class StartupError(Exception):
    """A program cannot start; the message is the one line the operator sees."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class Runtime:
    """A running program: its name, its stop event, and how many signals asked it to stop
    (a second one means: skip the waits).

    The program's one signal seam: SIGTERM and SIGINT only count here; the program's loop
    (the API's server loop, its workers' parent, the consumer's and the agent's loops) looks
    at ``signals`` or waits on ``stop`` and does the work. A signal that came during start-up
    is there when the loop first looks."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.settings = settings
        self.name = name
        self.stop = threading.Event()
        self.signals = 0

    def handle_signal(self, _signum: int = 0, _frame=None) -> None:
        self.signals += 1
        self.stop.set()

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self.handle_signal)


def run(settings: Settings, name: str, body: Callable[[Runtime], int],
        pod_ip: str | None = None) -> int:
    """Set the program up, run ``body`` until it returns its exit code, tear down."""
    logs.configure(settings.log_level)
    try:
        permissions.secure(settings)
    except OSError as exc:  # DATA_DIR read-only, or not ours
        print(f"simple-time-service: DATA_DIR={settings.data_dir} is not usable ({exc}): "
              f"expected a directory that uid {os.getuid()} can write", file=sys.stderr)
        return 2
    if metrics.init(settings.metrics_dir):
        sensors.start(name, __version__)
    tracing.init(settings, name, pod_ip)
    runtime = Runtime(settings, name)
    runtime.install_signal_handlers()
    try:
        return body(runtime)
    except StartupError as exc:
        print(f"simple-time-service: {exc}", file=sys.stderr)
        return exc.code
    finally:
        tracing.shutdown()


def idle(runtime: Runtime) -> int:
    """Wait for the stop signal. Under supervisord a program that exits at once is restarted
    in a loop and ends FATAL; one with nothing to do (Kafka off) stays up doing nothing."""
    runtime.stop.wait()
    return 0

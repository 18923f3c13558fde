"""The run-time switches: DATA_DIR/switches.json, the drain toggle and the injected fault.

Written by whichever API process answers POST /readyz/disable|enable, POST /faults or
DELETE /faults; read by every API process (at most every CHECK_EVERY seconds, so all of them
follow within a quarter of a second) and shown by /status. Replaced atomically under a lock, so
two processes writing at once never lose each other's switch and a reader never sees half a
file. A missing or unreadable file is "no switch set": the appliance serves as configured.
"""

from __future__ import annotations

import fcntl
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

CHECK_EVERY = 0.25  # seconds between two looks at the file by one process


@dataclass(frozen=True)
class Fault:
    """A share of requests answered 500, or delayed, on some routes, until a time."""

    error_rate: float = 0.0  # 0-1
    delay_ms: int = 0
    routes: tuple[str, ...] = ("/",)  # exact paths, or prefixes ending in "*"
    until: float | None = None  # epoch seconds; None: for as long as it is configured
    source: str = "settings"  # settings (FAULT_*), or runtime (POST /faults)

    @property
    def active(self) -> bool:
        idle = self.error_rate == 0 and self.delay_ms == 0
        return not idle and (self.until is None or time.time() < self.until)

    def covers(self, path: str) -> bool:
        return any(path == route or (route.endswith("*") and path.startswith(route[:-1]))
                   for route in self.routes)


@dataclass(frozen=True)
class Switches:
    draining: bool = False
    fault: Fault | None = None  # the run-time fault; the configured one lives in Settings


class SwitchFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> Switches:
        try:
            data = json.loads(self.path.read_text())
            fault = data.get("fault")
            if fault is not None:
                fault = Fault(**{**fault, "routes": tuple(fault["routes"])})
            return Switches(draining=bool(data.get("draining")), fault=fault)
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return Switches()

    def change(self, **changes) -> Switches:
        """Set some switches, keeping the others: ``change(draining=True)``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            switches = replace(self.read(), **changes)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(switches)))
            tmp.replace(self.path)
        return switches


class SwitchReader:
    """One process's view of the file: read again at most every CHECK_EVERY seconds, and only
    when it changed, so a request pays a clock read."""

    def __init__(self, file: SwitchFile) -> None:
        self.file = file
        self.current = file.read()
        self._checked = time.monotonic()
        self._stamp = self._mtime()

    def _mtime(self) -> tuple[int, int] | None:
        try:
            stat = self.file.path.stat()  # a replaced file is a new inode, whatever its mtime
            return stat.st_ino, stat.st_mtime_ns
        except OSError:
            return None

    def get(self) -> Switches:
        now = time.monotonic()
        if now - self._checked >= CHECK_EVERY:
            self._checked = now
            stamp = self._mtime()
            if stamp != self._stamp:
                self._stamp, self.current = stamp, self.file.read()
        return self.current

    def changed(self, switches: Switches) -> None:
        """This process wrote ``switches``: follow at once, not a quarter-second later."""
        self.current, self._stamp = switches, self._mtime()

"""Faults injected on purpose, and the threads a delay may hold.

A fault (FAULT_ERROR_RATE, FAULT_DELAY_MS, FAULT_ROUTES from the start, or POST /faults at run
time until its expiry) answers a share of the requests of its routes with a 500, or holds them
first. It never touches /healthz, /readyz, the admin routes or the admin listener: a load
balancer's probes stay healthy while its traffic sees the fault, which is the point of the test.
A delay holds a worker thread, so delays share DELAY_CONCURRENCY slots with /delay: past them a
request is served at once, not delayed (and not marked injected), and GET / keeps its threads.

Every injected exchange carries ``injected: {kind, value}`` in its http_response event (kind
``error``, value the status; or ``delay``, value the milliseconds; an error that was delayed
first is ``error`` with ``delay_ms`` beside), and faults_injected_total counts them.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from appliance.api.http.access import ADMIN, ADMIN_ROUTES
from appliance.core import sensors
from appliance.core.config import Settings
from appliance.core.timefmt import iso_from_epoch
from appliance.schema.switches import Fault, SwitchReader

NEVER_FAULTED = frozenset({"/healthz", "/readyz", "/faults"} | {path for _, path in ADMIN_ROUTES})
NEVER_FAULTED_PREFIXES = ("/readyz/", "/events/")
INJECTED_STATUS = 500


class DelaySlots:
    """The delays allowed in flight in this process (/delay and injected delays): past them a
    delay is refused at once."""

    def __init__(self, slots: int) -> None:
        self.slots = threading.BoundedSemaphore(slots) if slots > 0 else None

    def hold(self, seconds: float) -> bool:
        if self.slots is None or not self.slots.acquire(blocking=False):
            return False
        try:
            time.sleep(seconds)
        finally:
            self.slots.release()
        return True


@dataclass(frozen=True)
class Injection:
    error: bool
    delay_ms: int

    def record(self) -> dict[str, Any]:
        """What the event says was injected."""
        if not self.error:
            return {"kind": "delay", "value": self.delay_ms}
        marked: dict[str, Any] = {"kind": "error", "value": INJECTED_STATUS}
        if self.delay_ms:
            marked["delay_ms"] = self.delay_ms
        return marked


def faultable(environ: dict[str, Any]) -> bool:
    path = environ.get("PATH_INFO", "")
    return (environ.get("sts.plane") != ADMIN and path not in NEVER_FAULTED
            and not path.startswith(NEVER_FAULTED_PREFIXES))


def fault_view(fault: Fault | None) -> dict[str, Any] | None:
    """A fault as /faults and /status show it: until as an ISO time (null: no expiry)."""
    if fault is None or not fault.active:
        return None
    shown = asdict(fault)
    shown["routes"] = list(fault.routes)
    shown["until"] = None if fault.until is None else iso_from_epoch(fault.until)
    return shown



class FaultPolicy:
    def __init__(self, settings: Settings, switches: SwitchReader, slots: DelaySlots) -> None:
        self.configured = Fault(settings.fault_error_rate, settings.fault_delay_ms,
                                settings.fault_routes)
        self.switches = switches
        self.slots = slots

    def active(self) -> Fault | None:
        """The fault in force: the run-time one while it lasts, else the configured one."""
        runtime = self.switches.get().fault
        if runtime is not None and runtime.active:
            return runtime
        return self.configured if self.configured.active else None

    def apply(self, environ: dict[str, Any]) -> Injection | None:
        """Decide for this request, and hold it if it is to be delayed."""
        fault = self.active()
        if fault is None or not fault.covers(environ.get("PATH_INFO", "")) or not faultable(environ):
            return None
        delayed = fault.delay_ms if fault.delay_ms and self.slots.hold(fault.delay_ms / 1000) else 0
        error = fault.error_rate > 0 and random.random() < fault.error_rate
        if not error and not delayed:
            return None
        sensors.on_fault_injected("error" if error else "delay")
        return Injection(error, delayed)

    def summary(self) -> dict[str, Any]:
        """What /faults and /status say: the fault in force (until when) and the drain."""
        return {"active": fault_view(self.active()), "draining": self.switches.get().draining}

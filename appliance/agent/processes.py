"""The supervised processes as components: state, pid, uptime, restarts, the broker's RSS, and
for the consumer whether it actually consumes (its report: partitions, lag, stalls)."""

from __future__ import annotations

import time
from typing import Any

from appliance.agent.probes import Result, not_run
from appliance.core import metrics, supervisor
from appliance.core.config import PROGRAMS, Settings
from appliance.schema.consumer_report import ConsumerReport


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def consumer_assignment(report: ConsumerReport | None, stale_after: float,
                        data: dict[str, Any], detail: str) -> tuple[str, str]:
    """Running is not consuming: DEGRADED until the group gave it partitions, DOWN when stalled."""
    age = report.age_s if report else None
    if age is None or age > stale_after:
        return "DEGRADED", f"{detail}; no report from the consumer for a while (starting?)"
    data["assigned_partitions"] = report.assigned_partitions
    data["lag"] = report.lag
    if report.stalled:
        return "DOWN", (f"{detail}; stalled: lag {report.lag}, no progress for "
                        f"{report.no_progress_s:.0f} s")
    if not report.assigned_partitions:
        return "DEGRADED", f"{detail}; no partitions assigned yet (joining the group)"
    return "UP", f"{detail}; {len(report.assigned_partitions)} partitions assigned"


CRASH_LOOP = (3, 120.0)  # this many restarts within this many seconds: the program keeps failing


class ProcessProbe:
    """Every program supervisord runs, one component each; counts restarts by pid changes."""

    def __init__(self, settings: Settings, clock=time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.restarts: dict[str, int] = {}
        self._restarted_at: dict[str, list[float]] = {}
        self._pids: dict[str, int] = {}
        self._seen_recycles = 0
        self.broker_extra: dict[str, Any] = {}  # the recycler's figures, shown with the broker

    def __call__(self) -> dict[str, Result]:
        try:
            infos = supervisor.processes(self.settings)
        except supervisor.NotRunning:
            return {"processes": ("DISABLED", "not running under supervisord", {})}
        results = {f"process.{info['name']}": self._one(info) for info in infos}
        for name in PROGRAMS:  # `up` configures only the programs chosen: the rest are not run
            results.setdefault(f"process.{name}", self.unlisted(name))
        return results

    def unlisted(self, name: str) -> Result:
        if name == "broker" and not self.settings.embedded_broker:
            return "DISABLED", "external or no Kafka", {}
        if name in self.settings.programs:
            return "DOWN", f"chosen, but supervisord has no program {name} (restart the appliance)", {}
        return not_run(self.settings)

    def _one(self, info: dict[str, Any]) -> Result:
        name, pid, state = info["name"], info["pid"], info["statename"]
        self._count_restart(name, pid)
        data = {"pid": pid, "uptime_s": info["now"] - info["start"] if state == "RUNNING" else 0,
                "restarts": self.restarts.get(name, 0), "statename": state}
        if name == "broker" and pid:
            data.update(rss_mb=rss_mb(pid), **self.broker_extra)
        word = supervisor.STATE_WORDS.get(state, "DOWN")
        detail = f"{state.lower()}: {info['description']}"
        if name == "consumer" and word == "UP" and self.settings.kafka_enabled:
            report = ConsumerReport.read(self.settings.layout.consumer_report)
            stale_after = max(3 * self.settings.status_interval, 5.0)
            word, detail = consumer_assignment(report, stale_after, data, detail)
        recent = self.recent_restarts(name)
        if recent >= CRASH_LOOP[0]:
            word = "DOWN"
            detail = f"failing: {recent} restarts in the last {CRASH_LOOP[1]:.0f} s; {detail}"
        return word, detail, data

    def _recycled(self, name: str) -> bool:
        recycles = self.broker_extra.get("recycles", 0) if name == "broker" else 0
        if recycles > self._seen_recycles:
            self._seen_recycles = recycles
            return True
        return False

    def recent_restarts(self, name: str) -> int:
        cutoff = self.clock() - CRASH_LOOP[1]
        times = [t for t in self._restarted_at.get(name, []) if t >= cutoff]
        self._restarted_at[name] = times
        return len(times)

    def _count_restart(self, name: str, pid: int) -> None:
        previous = self._pids.get(name)
        if pid and previous and pid != previous:
            self.restarts[name] = self.restarts.get(name, 0) + 1
            if not self._recycled(name):  # a recycle is the agent's doing, not a failure
                self._restarted_at.setdefault(name, []).append(self.clock())
            metrics.mark_dead(previous)  # its live gauges go; its counters still count
        if pid:
            self._pids[name] = pid

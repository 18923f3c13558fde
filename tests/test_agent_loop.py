"""The agent's cadence: quick rounds while the appliance starts, STATUS_INTERVAL once it is up."""

from __future__ import annotations

import threading

from appliance.agent import loop
from appliance.core.config import Settings

UP = ("UP", "ok", {})
STARTING = ("DEGRADED", "no partitions assigned yet (joining the group)", {})


class RecordingStop(threading.Event):
    """A stop event whose waits return at once and are recorded; set after ``rounds`` waits."""

    def __init__(self, rounds: int) -> None:
        super().__init__()
        self.waits: list[float] = []
        self.rounds = rounds

    def wait(self, timeout=None) -> bool:
        self.waits.append(round(timeout, 2))
        if len(self.waits) >= self.rounds:
            self.set()
        return self.is_set()


def agent_with(tmp_path, monkeypatch, states: list, rounds: int) -> RecordingStop:
    stop = RecordingStop(rounds)
    agent = loop.Agent(Settings(data_dir=tmp_path, status_interval=5.0), stop)
    answers = iter(states)
    monkeypatch.setattr(agent, "round", lambda: {"process.consumer": next(answers),
                                                 "otel": ("DISABLED", "not configured", {})})
    monkeypatch.setattr(loop.time, "monotonic", lambda: 1000.0)  # rounds take no time
    agent.run()
    return stop


def test_rounds_are_quick_until_every_component_is_up_then_at_the_interval(tmp_path, monkeypatch):
    stop = agent_with(tmp_path, monkeypatch, [STARTING, STARTING, UP, STARTING, UP], rounds=5)
    # Once up, a later DEGRADED is reported at the usual interval: the quick rounds are for start.
    assert stop.waits == [loop.STARTUP_INTERVAL, loop.STARTUP_INTERVAL, 5.0, 5.0, 5.0]


def test_quick_rounds_end_after_the_startup_window_whatever_the_states(tmp_path, monkeypatch):
    clock = iter([0.0, 0.0, 0.0, 10.0, 10.0, 31.0, 31.0, 40.0, 40.0])
    stop = RecordingStop(rounds=4)
    agent = loop.Agent(Settings(data_dir=tmp_path, status_interval=5.0), stop)
    monkeypatch.setattr(agent, "round", lambda: {"kafka": ("DOWN", "not reachable", {})})
    monkeypatch.setattr(loop.time, "monotonic", lambda: next(clock))
    agent.run()
    assert stop.waits == [loop.STARTUP_INTERVAL, loop.STARTUP_INTERVAL, 5.0, 5.0]

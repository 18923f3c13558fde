"""The consumer's progress watchdog, on a clock the test turns."""

from __future__ import annotations

from appliance.pipeline.consumer.watchdog import (
    RECREATE_AFTER,
    STALL_AFTER,
    ProgressWatchdog,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watchdog() -> tuple[ProgressWatchdog, Clock]:
    clock = Clock()
    return ProgressWatchdog(clock), clock


def test_events_waiting_without_progress_for_the_threshold_is_a_stall_counted_once():
    dog, clock = watchdog()
    clock.now += STALL_AFTER - 1
    dog.observe(lag=500, database_failing=False)
    assert dog.stalled_since is None
    clock.now += 2
    dog.observe(lag=500, database_failing=False)
    dog.observe(lag=600, database_failing=False)
    assert dog.stalled_since is not None and dog.stalls == 1


def test_a_persisted_batch_or_a_zero_lag_is_progress():
    dog, clock = watchdog()
    clock.now += STALL_AFTER + 1
    dog.observe(lag=0, database_failing=False)
    assert dog.stalled_since is None
    clock.now += STALL_AFTER - 1
    dog.progressed()
    clock.now += STALL_AFTER - 1
    dog.observe(lag=50, database_failing=False)
    assert dog.stalled_since is None


def test_a_failing_database_is_not_a_stall_it_is_reported_as_itself():
    dog, clock = watchdog()
    clock.now += 5 * STALL_AFTER
    dog.observe(lag=5000, database_failing=True)
    assert dog.stalled_since is None and dog.stalls == 0


def test_a_long_stall_asks_for_a_new_client_once_then_waits_again():
    dog, clock = watchdog()
    clock.now += STALL_AFTER
    dog.observe(lag=10, database_failing=False)
    assert not dog.should_recreate()
    clock.now += RECREATE_AFTER
    assert dog.should_recreate()
    assert not dog.should_recreate()


def test_recovery_clears_the_stall():
    dog, clock = watchdog()
    clock.now += STALL_AFTER
    dog.observe(lag=10, database_failing=False)
    dog.progressed()
    dog.observe(lag=5, database_failing=False)
    assert dog.stalled_since is None and dog.stalls == 1

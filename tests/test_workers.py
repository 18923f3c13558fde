"""More than one API process on one port (WEB_PROCESSES): one API to its callers.

Unit parts (how many, the merged status, the spools) in-process; the rest with real processes:
a Tansu broker, the API's parent and its workers, the consumer, SQLite.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import time

import pytest
from procs import Appliance, Load, wait_until

from appliance.api.serving import balance
from appliance.core import cpus
from appliance.core.config import ConfigError, Settings
from appliance.core.process import Runtime
from appliance.pipeline.producer.spool import Spool
from appliance.schema.producer_status import ProducerStatus
from appliance.schema.spool import read_stats, spool_file, spool_files

# --- how many -------------------------------------------------------------------------------


def test_web_processes_is_auto_or_a_count_from_1_to_64():
    assert Settings.from_env({"WEB_PROCESSES": "auto"}).web_processes is None
    assert Settings.from_env({"WEB_PROCESSES": "3"}).api_processes == 3
    for bad in ("0", "65", "two", "1.5", ""):
        with pytest.raises(ConfigError, match="WEB_PROCESSES.*auto, or a whole number"):
            Settings.from_env({"WEB_PROCESSES": bad})


def test_auto_is_one_per_usable_cpu_and_at_most_four():
    assert Settings(kafka_brokers="kafka:9092").api_processes == min(4, cpus.usable_cpus())


def test_with_the_embedded_broker_auto_is_the_same_and_each_process_gets_a_partition():
    embedded = Settings(kafka_brokers="embedded")
    assert embedded.api_processes == min(4, cpus.usable_cpus())
    assert embedded.events_partitions == embedded.api_processes
    assert Settings(kafka_brokers="embedded", web_processes=3).events_partitions == 3
    assert Settings(kafka_brokers="embedded", kafka_partitions=1).events_partitions == 1
    assert Settings(kafka_brokers="kafka:9092", web_processes=2).events_partitions == 3  # its own


def test_a_cgroup_quota_caps_the_usable_cpus(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs
    assert cpus.cgroup_quota(tmp_path) == 1.5
    assert cpus.usable_cpus(tmp_path) == min(2, len(os.sched_getaffinity(0)))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpus.cgroup_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpus.cgroup_quota(tmp_path) == 0.5 and cpus.usable_cpus(tmp_path) == 1


# --- one status for all ---------------------------------------------------------------------


def worker_status(**values) -> ProducerStatus:
    return ProducerStatus(**{"connected": True, "state": "UP", **values})


merge_status = ProducerStatus.merge


def test_merged_status_sums_the_counters_and_is_connected_only_when_every_worker_is():
    merged = merge_status(worker_status(queued=10, delivered=9, spool_depth=1),
                          {1: worker_status(queued=5, delivered=5)}, 0)
    assert (merged.queued, merged.delivered, merged.spool_depth) == (15, 14, 1)
    assert merged.connected and merged.state == "UP"
    assert [w["queued"] for w in merged.workers] == [10, 5]
    half = merge_status(worker_status(), {1: worker_status(connected=False, state="DOWN",
                                                           last_error="refused",
                                                           last_error_at="2026-12-01T10:00:00Z")}, 0)
    assert not half.connected and half.state == "DEGRADED"
    assert half.last_error == "refused"


def test_every_counter_of_the_status_is_summed_over_the_workers():
    counters = [f.name for f in dataclasses.fields(ProducerStatus) if f.metadata["merge"] == "sum"]
    assert {"queued", "delivered", "lost", "spool_depth", "broker_batches"} <= set(counters)
    merged = merge_status(worker_status(**dict.fromkeys(counters, 2)),
                          {1: worker_status(**dict.fromkeys(counters, 3))}, 0)
    assert all(getattr(merged, name) == 5 for name in counters)


def test_the_api_is_paused_only_once_every_worker_is_and_answers():
    # The agent restarts the embedded broker once the API is paused with nothing in flight.
    assert not merge_status(worker_status(paused=True), {1: worker_status(paused=False)}, 0).paused
    assert not merge_status(worker_status(paused=True), {1: None}, 0).paused
    assert merge_status(worker_status(paused=True), {1: worker_status(paused=True)}, 0).paused


def test_a_worker_that_does_not_answer_is_named_and_makes_the_state_at_most_degraded():
    merged = merge_status(worker_status(queued=3), {1: None, 2: worker_status(queued=4)}, 0)
    assert merged.queued == 7 and merged.workers_unreachable == [1]
    assert not merged.connected and merged.state == "DEGRADED"


def test_the_status_survives_its_json_form():
    status = merge_status(worker_status(queued=3, last_error="x"), {1: None}, 0)
    assert ProducerStatus.from_json(status.to_json()) == status
    assert ProducerStatus.from_json({"queued": "many", "paused": 1}) == ProducerStatus()


# --- connections shared out ----------------------------------------------------------------


def test_a_worker_accepts_only_while_no_live_sibling_holds_fewer_connections(monkeypatch):
    fd = balance.shared_memory(3)
    first, second, third = (balance.ConnectionBalance(fd, i, 3) for i in range(3))
    assert first.may_accept(0) and second.may_accept(0) and third.may_accept(0)
    assert not first.may_accept(1)  # the others hold 0
    assert second.may_accept(0) and not second.may_accept(1)
    assert third.may_accept(2) is False  # 1, 1 elsewhere
    assert third.may_accept(1), "as many as the least loaded sibling: may accept"
    later = time.clock_gettime_ns(time.CLOCK_MONOTONIC) + (balance.STALE_MS + 1) * 1_000_000
    monkeypatch.setattr(balance.time, "clock_gettime_ns", lambda _clock: later)
    assert first.may_accept(5), "siblings that stopped looking are left out"
    os.close(fd)


def test_the_parent_leaves_a_dead_worker_out_at_once():
    fd = balance.shared_memory(2)
    first, second = balance.ConnectionBalance(fd, 0, 2), balance.ConnectionBalance(fd, 1, 2)
    assert second.may_accept(0) and not first.may_accept(1)
    balance.ConnectionBalance(fd, 0, 2).forget(1)
    assert first.may_accept(1), "the dead worker's 0 connections no longer hold it back"
    os.close(fd)


class FakeListener:
    def __init__(self) -> None:
        self.accepting, self.accepted = True, 0

    def accept(self):
        self.accepted += 1
        return object(), ("127.0.0.1", 1)


def test_an_accept_is_checked_and_published_at_once_not_at_the_end_of_the_turn():
    fd = balance.shared_memory(2)
    listeners = [FakeListener(), FakeListener()]
    held = [0, 0]
    sharing = [balance.SharedAccept(balance.ConnectionBalance(fd, i, 2), lambda i=i: held[i], 0.1)
               for i in range(2)]
    accept = [lambda i=i: sharing[i].accept(listeners[i].accept) for i in range(2)]
    sharing[1].tick(0.0)  # the sibling is serving, with no connection yet
    assert accept[0]() is not None
    held[0] = 1
    assert accept[0]() is None, "1 against 0: leave it to the sibling"
    assert listeners[0].accepting, "the listener stays polled: it looks again on the next turn"
    assert accept[1]() is not None
    held[1] = 1
    assert accept[0]() is not None, "1 against 1: accept again"
    assert [listener.accepted for listener in listeners] == [2, 1]
    os.close(fd)


# --- the spools -----------------------------------------------------------------------------


def test_each_worker_has_its_own_spool_file_and_the_statistics_cover_all(tmp_path):
    first, second = Spool(tmp_path, 10_000_000, 0), Spool(tmp_path, 10_000_000, 1)
    first.append([(b"k", b"a", None)])
    second.append([(b"k", b"b", None), (b"k", b"c", None)])
    assert spool_files(tmp_path) == {0: tmp_path / "spool.db", 1: tmp_path / "spool-1.db"}
    assert read_stats(tmp_path).depth == 3
    first.close(), second.close()


def test_the_spool_of_a_worker_that_no_longer_runs_is_adopted_whole(tmp_path):
    old = Spool(tmp_path, 10_000_000, 2)
    old.append([(b"k", f"event {i}".encode(), [("h", b"v")]) for i in range(5)])
    old.close()
    spool = Spool(tmp_path, 10_000_000, 0)
    spool.append([(b"k", b"mine", None)])
    assert spool.adopt(spool_file(tmp_path, 2)) == 5
    assert not spool_file(tmp_path, 2).exists()
    rows = spool.read_from(1, 100)
    assert [r.value for r in rows] == [b"mine"] + [f"event {i}".encode() for i in range(5)]
    assert rows[1].headers == [("h", b"v")] and spool.depth == 6
    spool.close()


# --- real processes -------------------------------------------------------------------------

def workers_of(app: Appliance) -> list[int]:
    pid = app.api.proc.pid
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


def two_workers(tmp_path, brokers: str, **env) -> Appliance:
    app = Appliance(tmp_path, brokers, WEB_PROCESSES="2", **env)
    app.start()
    wait_until(lambda: len(workers_of(app)) == 2, 10, what="two API workers")
    wait_until(lambda: app.api.output().count('"message":"serving"') == 2, 20,
               what="both workers serving")
    return app


def rows_exactly(app: Appliance, ids: list[str], timeout: float = 60) -> None:
    """Each id has exactly one response row, and there is no other."""
    wanted = set(ids)
    try:
        wait_until(lambda: len(set(app.request_ids("http_responses")) & wanted) == len(wanted),
                   timeout, 0.2)
    except AssertionError:
        pass  # the comparison below says what is missing
    time.sleep(0.5)
    stored = [rid for rid in app.request_ids("http_responses") if rid in wanted]
    assert len(stored) == len(set(stored)) == len(ids), (
        f"{len(set(stored))} of {len(ids)} requests have a row, {len(stored) - len(set(stored))} "
        f"duplicated\n--- api ---\n{app.api.output()[-3000:]}")


@pytest.mark.broker
def test_two_workers_share_the_port_and_answer_status_and_flush_for_both(tmp_path, broker):
    app = two_workers(tmp_path, broker.bootstrap)
    try:
        load = Load(app.port, "w", connections=8).start()
        time.sleep(3)
        ids = load.stop()
        status, flushed = app.request("POST", "/kafka/flush")[:2]
        assert status == 200 and flushed == {"remaining": 0, "flushed": True}
        status, kafka = app.get("/kafka/status")
        assert status == 200 and kafka["workers_unreachable"] == []
        queued = [w["queued"] for w in kafka["workers"]]
        assert len(queued) == 2 and all(queued), f"one worker served everything: {queued}"
        # 8 keep-alive connections, 4 each (api/serving/balance.py): the two queued about as many.
        assert min(queued) > max(queued) / 3, f"the connections were not shared out: {queued}"
        # Two events per request (request, response); the other GETs of this test add theirs.
        assert kafka["queued"] >= 2 * len(ids) and kafka["lost"] == 0
        rows_exactly(app, ids)
    finally:
        app.stop()


def keep_alive_burst(port: int, connections: int, rounds: int) -> None:
    """``connections`` opened at once (as wrk or a load balancer's pool does), then ``rounds``
    GET / on each, in turn."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(connections)]
    try:
        for _ in range(rounds):
            for sock in socks:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            for sock in socks:
                reply = b""
                while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                    reply += sock.recv(65536)
                assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.broker
def test_connections_opened_at_once_are_shared_out_between_the_workers(tmp_path, broker):
    app = two_workers(tmp_path, broker.bootstrap)
    try:
        keep_alive_burst(app.port, 4, 100)
        queued = [w["queued"] for w in app.get("/kafka/status")[1]["workers"]]
        # 2 events per request, 200 per connection: two connections each (before: 800 and 0).
        assert queued == [400, 400], queued
    finally:
        app.stop()


@pytest.mark.broker
def test_kill_9_of_a_worker_under_load_loses_nothing_and_it_is_started_again(tmp_path, broker):
    app = two_workers(tmp_path, broker.bootstrap, EVENT_DURABILITY="sync")
    try:
        load = Load(app.port, "k", connections=4).start()
        time.sleep(2)
        victim = workers_of(app)[1]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(workers_of(app)) == 2 and victim not in workers_of(app), 15,
                   what="the worker started again")
        time.sleep(2)
        ids = load.stop()
        assert app.api.running and "api worker exited: starting it again" in app.api.output()
        rows_exactly(app, ids)
    finally:
        app.stop()


@pytest.mark.broker
def test_kill_9_of_the_parent_takes_the_workers_with_it(tmp_path, broker):
    app = two_workers(tmp_path, broker.bootstrap)
    workers = workers_of(app)
    app.api.kill()

    def gone() -> bool:
        return not any(os.path.exists(f"/proc/{pid}") and "zombie" not in _state(pid)
                       for pid in workers)
    wait_until(gone, 5, 0.1, what="the workers to die with their parent")
    app.stop()


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(line for line in status if line.startswith("State:")).lower()
    except (OSError, StopIteration):
        return "zombie"


@pytest.mark.broker
def test_fewer_workers_after_a_restart_deliver_what_the_others_kept(tmp_path, broker):
    down = f"127.0.0.1:{broker.port + 1}"  # nothing listens: everything stays in the spools
    app = Appliance(tmp_path, down, WEB_PROCESSES="3")
    app.start_api()
    load = Load(app.port, "s", connections=6).start()
    time.sleep(2)
    ids = load.stop()
    app.api.stop()
    assert len(spool_files(app.data_dir / "spool")) == 3
    again = Appliance(tmp_path, broker.bootstrap, WEB_PROCESSES="1")  # the same DATA_DIR
    try:
        again.start()
        rows_exactly(again, ids)
        assert list(spool_files(app.data_dir / "spool")) == [0]
    finally:
        again.stop()


def test_a_spool_that_cannot_be_opened_is_one_line_from_the_parent(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the spool directory should be")
    app = Appliance(tmp_path, "127.0.0.1:1", WEB_PROCESSES="2", SPOOL_DIR=str(blocker))
    app.api.start()
    wait_until(lambda: not app.api.running, 20, what="the API to exit")
    assert app.api.proc.returncode == 2
    errors = [line for line in app.api.output().splitlines() if line.startswith("simple-time-service:")]
    assert len(errors) == 1 and "SPOOL_DIR=" in errors[0] and "Traceback" not in app.api.output()


@pytest.mark.broker
def test_the_api_runs_at_a_lower_priority_than_the_consumer(tmp_path, broker):
    app = two_workers(tmp_path, broker.bootstrap)
    try:
        def nice(pid: int) -> int:
            return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[16])
        own = os.getpriority(os.PRIO_PROCESS, 0)
        assert [nice(pid) for pid in [app.api.proc.pid, *workers_of(app)]] == [min(19, own + 5)] * 3
        assert nice(app.consumer.proc.pid) == own
    finally:
        app.stop()


def test_a_sigterm_while_a_worker_is_still_starting_stops_the_api(tmp_path):
    """The stop signal passed on at once reaches workers that have not started serving."""
    for _ in range(3):
        app = Appliance(tmp_path, None, WEB_PROCESSES="2")
        app.api.start()
        wait_until(app._healthy, 20, 0.02, what="a first worker answering")
        assert app.api.stop(15) == 0, app.api.output()[-2000:]


def test_a_stop_signal_that_came_during_start_up_is_not_forgotten():
    from appliance.api.http.lifecycle import Lifecycle
    from appliance.api.serving.server import ApiServer, bind
    runtime = Runtime(Settings(), "api")
    runtime.handle_signal()  # before the server loop ever looked
    lifecycle = Lifecycle()
    server = ApiServer(lambda environ, start: [], Settings(host="127.0.0.1", port=0),
                       lifecycle, bind("127.0.0.1", 0), runtime)
    started = time.monotonic()
    assert server.serve() == 0
    assert time.monotonic() - started < 2 and lifecycle.state == Lifecycle.DRAINING
    runtime.handle_signal()
    assert runtime.signals == 2

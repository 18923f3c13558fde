"""The spool: durable, ordered, bounded, and honest about what it drops."""

from __future__ import annotations

import threading

import pytest

from appliance.pipeline.producer.spool import (
    ACCEPTED,
    NOT_WRITTEN,
    WRITTEN,
    Spool,
    SpoolWriter,
)


def message(i: int, size: int = 100) -> tuple[bytes, bytes, list]:
    return (f"k{i}".encode(), f"{i:06d}".encode().ljust(size, b"."), [("traceparent", b"\x00\xff")])


def test_messages_come_back_in_order_with_their_keys_and_headers(tmp_path):
    spool = Spool(tmp_path, 1_000_000)
    spool.append([message(i) for i in range(5)])
    read = spool.read_from(1, 10)
    assert [m.value[:6] for m in read] == [b"000000", b"000001", b"000002", b"000003", b"000004"]
    assert read[0].key == b"k0" and read[0].headers == [("traceparent", b"\x00\xff")]
    spool.remove([(m.id, m.size) for m in read[:2]])
    assert [m.value[:6] for m in spool.read_from(1, 10)] == [b"000002", b"000003", b"000004"]
    assert spool.depth == 3 and spool.bytes == sum(m.size for m in read[2:])
    assert [m.value[:6] for m in spool.read_from(read[3].id, 10)] == [b"000003", b"000004"]


def test_its_usage_read_while_appends_drop_is_within_the_bound_and_adds_up(tmp_path):
    spool = Spool(tmp_path, max_bytes=1_000)
    stop, seen = threading.Event(), []

    def watch():
        while not stop.is_set():
            seen.append(spool.usage())

    watcher = threading.Thread(target=watch)
    watcher.start()
    for batch in range(200):
        spool.append([message(batch * 3 + i) for i in range(3)])
    stop.set()
    watcher.join()
    assert seen and all(size <= 1_000 for _, size, _ in seen)
    assert all(depth + dropped <= 600 for depth, _, dropped in seen)
    assert spool.usage() == (spool.depth, spool.bytes, spool.dropped) and spool.dropped + spool.depth == 600


def test_spool_survives_reopening(tmp_path):
    spool = Spool(tmp_path, 1_000_000)
    spool.append([message(i) for i in range(3)])
    spool.close()
    again = Spool(tmp_path, 1_000_000)
    assert again.depth == 3 and again.bytes == spool.bytes
    assert [m.key for m in again.read_from(1, 10)] == [b"k0", b"k1", b"k2"]
    assert again.last_id == 3


def test_at_the_bound_the_oldest_are_dropped_and_counted_durably(tmp_path):
    spool = Spool(tmp_path, max_bytes=1_000)  # room for 9 messages of 102 bytes
    spool.append([message(i) for i in range(15)])
    assert spool.bytes <= 1_000
    assert spool.dropped == 15 - spool.depth and spool.dropped > 0
    kept = [int(m.value[:6]) for m in spool.read_from(1, 100)]
    assert kept == list(range(15 - len(kept), 15))  # the newest survive, in order
    assert spool.dropped_below == 15 - len(kept)  # ids 1..dropped_below are gone
    spool.close()
    assert Spool(tmp_path, 1_000).dropped == 15 - len(kept)


def test_close_twice_is_harmless(tmp_path):
    spool = Spool(tmp_path, 1_000)
    spool.append([(b"k", b"kept", None)])
    spool.close()
    spool.close()  # raises nothing, and leaves the file as the first close did
    reopened = Spool(tmp_path, 1_000)
    assert [message.value for message in reopened.read_from(1, 10)] == [b"kept"]
    assert reopened.depth == 1
    reopened.close()


def test_removing_rows_a_full_spool_already_dropped_counts_nothing_twice(tmp_path):
    spool = Spool(tmp_path, max_bytes=1_000)
    spool.append([message(i) for i in range(5)])
    first = spool.read_from(1, 5)
    spool.append([message(i) for i in range(5, 15)])  # drops the oldest
    spool.remove([(m.id, m.size) for m in first])
    assert spool.depth == len(spool.read_from(1, 100))
    assert spool.bytes == sum(m.size for m in spool.read_from(1, 100))


def test_writer_puts_everything_on_disk_by_close(tmp_path):
    spool = Spool(tmp_path, 1_000_000)
    writer = SpoolWriter(spool, on_lost=lambda batch: pytest.fail("nothing should be lost"))
    for i in range(200):
        assert writer.put([message(i)]) == ACCEPTED
    writer.close()
    assert spool.depth == 200
    assert [int(m.value[:6]) for m in spool.read_from(1, 500)] == list(range(200))


def test_a_waiting_caller_returns_once_its_rows_are_committed(tmp_path):
    spool = Spool(tmp_path, 1_000_000)
    written: list = []
    writer = SpoolWriter(spool, on_lost=lambda batch: pytest.fail("nothing should be lost"),
                         on_written=lambda: written.append(spool.depth), linger=0)
    assert writer.put([message(1)], wait=True) == WRITTEN
    assert spool.depth == 1 and written == [1]
    writer.close()


def test_writer_reports_what_a_failed_commit_could_not_keep(tmp_path):
    spool = Spool(tmp_path, 1_000_000)
    spool.close()  # every commit now fails
    lost: list = []
    writer = SpoolWriter(spool, on_lost=lost.extend, linger=0)
    assert writer.put([message(0)], wait=True) == NOT_WRITTEN
    writer.put([message(1), message(2)])
    writer.close()
    assert [m[0] for m in lost] == [b"k0", b"k1", b"k2"]


def test_released_ids_are_deleted_as_runs_of_consecutive_ids():
    from appliance.pipeline.producer.spool import id_ranges
    assert id_ranges([5, 3, 4, 9, 1, 10, 4]) == [(1, 1), (3, 5), (9, 10)]
    assert id_ranges([]) == []


def test_removing_scattered_rows_keeps_every_other_row(tmp_path):
    spool = Spool(tmp_path, 10_000_000)
    spool.append([(b"k", f"{i:06d}".encode(), None) for i in range(10)])
    read = spool.read_from(1, 10)
    spool.remove([(m.id, m.size) for m in read if int(m.value) in (0, 1, 2, 5, 7, 8)])
    assert [int(m.value) for m in spool.read_from(1, 10)] == [3, 4, 6, 9]
    assert spool.depth == 4 and spool.bytes == sum(m.size for m in read) * 4 // 10


def test_rows_read_back_byte_for_byte_whatever_they_hold(tmp_path):
    spool = Spool(tmp_path, 10_000_000)
    messages = [(None, b'{"a":"\xc3\xa9"}', None), (b"", b"\x00\xff\xfe not UTF-8", None),
                (b"key", b"v" * 5000, [("traceparent", b"00-ab-cd-01"), ("raw", bytes(range(256)))])]
    messages += [(f"k{i}".encode(), f"{i}".encode(), None) for i in range(300)]  # several INSERTs
    spool.append(messages)
    read = spool.read_from(1, 1000)
    assert [(m.key, m.value, m.headers or None) for m in read] == messages
    assert [m.id for m in read] == list(range(1, len(messages) + 1))
    assert [m.value for m in spool.read_from(3, 2)] == [b"v" * 5000, b"0"]


def test_rows_not_read_yet_come_from_memory_and_equal_what_the_database_holds(tmp_path, monkeypatch):
    spool = Spool(tmp_path, 10_000_000)
    messages = [(f"k{i}".encode(), f"{i:06d}".encode(), [("traceparent", b"00-%d" % i)] if i % 2 else None)
                for i in range(50)]
    spool.append(messages[:30])
    spool.append(messages[30:])
    from_disk = Spool(tmp_path, 10_000_000).read_from(1, 100)  # another process: the database
    first, rest = spool.read_from(1, 20), spool.read_from(21, 100)
    assert first + rest == from_disk
    assert spool.read_from(5, 3) == from_disk[4:7]  # a rewind is read from the database again


def test_a_relay_far_behind_reads_from_the_database_and_then_from_memory_again(tmp_path, monkeypatch):
    monkeypatch.setattr("appliance.pipeline.producer.spool.MAX_FRESH", 10)
    spool = Spool(tmp_path, 10_000_000)
    for start in range(0, 30, 6):  # 5 appends of 6: memory overflows and starts over
        spool.append([(b"k", f"{i:06d}".encode(), None) for i in range(start, start + 6)])
    read, cursor = [], 1
    while cursor <= spool.last_id:
        batch = spool.read_from(cursor, 7)
        read += batch
        cursor = batch[-1].id + 1
    assert [int(m.value) for m in read] == list(range(30))
    assert not spool._fresh

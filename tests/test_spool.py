"""The spool: durable, ordered, bounded, and honest about what it drops."""

from __future__ import annotations

import pytest

from appliance.spool import Spool


def message(i: int, size: int = 100) -> tuple[bytes, bytes, list]:
    return (f"k{i}".encode(), f"{i:06d}".encode().ljust(size, b"."), [("traceparent", b"\x00\xff")])


def test_messages_come_back_in_order_with_their_keys_and_headers(tmp_path):
    spool = Spool(tmp_path, 1_000_000)
    spool.append([message(i) for i in range(5)])
    peeked = spool.peek(10)
    assert [m.value[:6] for m in peeked] == [b"000000", b"000001", b"000002", b"000003", b"000004"]
    assert peeked[0].key == b"k0" and peeked[0].headers == [("traceparent", b"\x00\xff")]
    spool.remove([m.id for m in peeked[:2]])
    assert [m.value[:6] for m in spool.peek(10)] == [b"000002", b"000003", b"000004"]
    assert spool.depth == 3


def test_spool_survives_reopening(tmp_path):
    spool = Spool(tmp_path, 1_000_000)
    spool.append([message(i) for i in range(3)])
    spool.close()
    again = Spool(tmp_path, 1_000_000)
    assert again.depth == 3 and again.bytes == spool.bytes
    assert [m.key for m in again.peek(10)] == [b"k0", b"k1", b"k2"]


def test_at_the_bound_the_oldest_are_dropped_and_counted_durably(tmp_path):
    spool = Spool(tmp_path, max_bytes=1_000)  # room for 9 messages of 102 bytes
    spool.append([message(i) for i in range(15)])
    assert spool.bytes <= 1_000
    assert spool.dropped == 15 - spool.depth and spool.dropped > 0
    kept = [int(m.value[:6]) for m in spool.peek(100)]
    assert kept == list(range(15 - len(kept), 15))  # the newest survive, in order
    spool.close()
    assert Spool(tmp_path, 1_000).dropped == 15 - len(kept)


def test_close_twice_is_harmless(tmp_path):
    spool = Spool(tmp_path, 1_000)
    spool.close()
    spool.close()


def test_writer_puts_everything_on_disk_by_close(tmp_path):
    from appliance.spool import SpoolWriter
    spool = Spool(tmp_path, 1_000_000)
    writer = SpoolWriter(spool, on_lost=lambda batch: pytest.fail("nothing should be lost"))
    for i in range(200):
        assert writer.put([message(i)])
    writer.close()
    assert spool.depth == 200
    assert [int(m.value[:6]) for m in spool.peek(500)] == list(range(200))


def test_writer_reports_what_a_failed_commit_could_not_keep(tmp_path):
    from appliance.spool import SpoolWriter
    spool = Spool(tmp_path, 1_000_000)
    spool.close()  # every commit now fails
    lost: list = []
    writer = SpoolWriter(spool, on_lost=lost.extend)
    writer.put([message(1), message(2)])
    writer.close()
    assert [m[0] for m in lost] == [b"k1", b"k2"]

"""A batch the database refused is held and written again: never re-fetched, never skipped.

Unit level with a stand-in client; the real broker and database show the same in
test_pipeline.py (read-only database) and test_scale_out.py (PostgreSQL stopped under load).
"""

from __future__ import annotations

import threading

from appliance.pipeline.consumer.held import HeldBatch


class Message:
    def __init__(self, partition: int, offset: int, topic: str = "events"):
        self._topic, self._partition, self._offset = topic, partition, offset

    def topic(self):
        return self._topic

    def partition(self):
        return self._partition

    def offset(self):
        return self._offset


class Client:
    """Hands out ``arriving`` messages one per poll; records pause and resume."""

    def __init__(self, arriving=()):
        self.arriving = list(arriving)
        self.paused: list[list[int]] = []
        self.resumed: list[list[int]] = []

    def assignment(self):
        return [0, 1]

    def pause(self, partitions):
        self.paused.append(list(partitions))

    def resume(self, partitions):
        self.resumed.append(list(partitions))

    def poll(self, timeout):
        return self.arriving.pop(0) if self.arriving else None


def offsets(held: HeldBatch) -> list[tuple[int, int]]:
    return [(m.partition(), m.offset()) for m in held.messages]


def test_a_message_delivered_again_joins_the_batch_once():
    held = HeldBatch()
    held.add([Message(0, 1), Message(0, 2)])
    held.add([Message(0, 2), Message(1, 7)])
    assert offsets(held) == [(0, 1), (0, 2), (1, 7)]


def test_waiting_pauses_the_partitions_and_keeps_what_still_arrives():
    held, client = HeldBatch(), Client(arriving=[Message(1, 9), Message(0, 3)])
    held.add([Message(0, 1), Message(0, 2)])
    held.wait(client, 0.5, threading.Event(), usable=lambda msg: True)
    assert offsets(held) == [(0, 1), (0, 2), (1, 9), (0, 3)]
    assert client.paused and all(p == [0, 1] for p in client.paused)


def test_an_unusable_message_does_not_join():
    held, client = HeldBatch(), Client(arriving=[Message(0, 5)])
    held.wait(client, 0.3, threading.Event(), usable=lambda msg: False)
    assert not held


def test_a_stop_ends_the_wait_at_once():
    stop = threading.Event()
    stop.set()
    held, client = HeldBatch(), Client(arriving=[Message(0, 5)])
    held.wait(client, 30, stop, usable=lambda msg: True)
    assert client.arriving, "nothing polled after the stop"


def test_revoked_partitions_are_left_to_their_new_owner():
    held = HeldBatch()
    held.add([Message(0, 1), Message(1, 1), Message(2, 4)])
    held.forget([1, 2])
    assert offsets(held) == [(0, 1)]
    held.add([Message(1, 1)])  # assigned back later: it may join again
    assert offsets(held) == [(0, 1), (1, 1)]


def test_release_empties_the_batch_and_resumes_fetching():
    held, client = HeldBatch(), Client()
    held.add([Message(0, 1)])
    held.release(client)
    assert not held and client.resumed == [[0, 1]]

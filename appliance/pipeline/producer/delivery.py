"""Which spooled events Kafka holds, and when each may leave the spool.

A spool row is *in flight* from ``produce()`` until its delivery report. Then:
- release on **ack** (an external cluster, ``acks=all`` on a replicated topic): it may go;
- release on **commit** (the embedded broker, which keeps messages in memory only and forgets
  them when it stops or crashes): it stays *unconfirmed* until the consumer group's committed
  offset has passed it, i.e. until the consumer has persisted it. Should the broker lose it
  first, the row is still in the spool and is sent again; its event_id makes that harmless.

Rows are tracked by spool id. All state sits behind one lock: the relay thread reports and
confirms, request threads read the counts for /kafka/status.
"""

from __future__ import annotations

import heapq
import threading


class DeliveryTracker:
    def __init__(self, until_committed: bool) -> None:
        self.until_committed = until_committed
        self._lock = threading.Lock()
        self._in_flight: dict[int, int] = {}  # spool id -> size
        self._unconfirmed: dict[int, list[tuple[int, int, int]]] = {}  # partition -> heap of
        # (offset, spool id, size)
        self._unconfirmed_ids: set[int] = set()
        self._released: list[tuple[int, int]] = []  # (spool id, size) to delete from the spool
        self._rewind_to: int | None = None  # lowest spool id that must be sent again
        self.confirmed_total = 0

    # --- the relay's side ----------------------------------------------------------------

    def tracked(self, row_id: int) -> bool:
        with self._lock:
            return row_id in self._in_flight or row_id in self._unconfirmed_ids

    def tracked_among(self, row_ids: list[int]) -> set[int]:
        """Those of ``row_ids`` that are in flight or unconfirmed (one lock for a batch)."""
        with self._lock:
            return {r for r in row_ids if r in self._in_flight or r in self._unconfirmed_ids}

    def sent(self, row_id: int, size: int) -> None:
        with self._lock:
            self._in_flight[row_id] = size

    def sent_all(self, rows: list[tuple[int, int]]) -> None:
        """``sent`` for each (spool id, size), under one lock."""
        if rows:
            with self._lock:
                self._in_flight.update(rows)

    def delivered(self, row_id: int, partition: int, offset: int) -> None:
        with self._lock:
            size = self._in_flight.pop(row_id, None)
            if size is None:
                return  # forgotten by a reset meanwhile: it is sent again anyway
            if not self.until_committed:
                self._released.append((row_id, size))
                return
            heapq.heappush(self._unconfirmed.setdefault(partition, []), (offset, row_id, size))
            self._unconfirmed_ids.add(row_id)

    def failed(self, row_id: int) -> None:
        """Not delivered: the row stays in the spool and is sent again."""
        with self._lock:
            if self._in_flight.pop(row_id, None) is not None:
                self._rewind(row_id)

    def confirm(self, committed: dict[int, int]) -> int:
        """Release every unconfirmed row below its partition's committed offset; return how many."""
        released = 0
        with self._lock:
            for partition, heap in self._unconfirmed.items():
                below = committed.get(partition, -1)
                while heap and heap[0][0] < below:
                    _, row_id, size = heapq.heappop(heap)
                    self._unconfirmed_ids.discard(row_id)
                    self._released.append((row_id, size))
                    released += 1
            self.confirmed_total += released
        return released

    def reset(self) -> int:
        """The broker forgot what it held (restart, new topic): send every unconfirmed row again."""
        with self._lock:
            count = len(self._unconfirmed_ids)
            if count:
                self._rewind(min(self._unconfirmed_ids))
            self._unconfirmed.clear()
            self._unconfirmed_ids.clear()
            return count

    def forget_below(self, row_id: int) -> None:
        """Rows up to ``row_id`` were dropped from a full spool: stop waiting for them."""
        with self._lock:
            self._in_flight = {r: s for r, s in self._in_flight.items() if r > row_id}
            for partition, heap in self._unconfirmed.items():
                kept = [entry for entry in heap if entry[1] > row_id]
                heapq.heapify(kept)
                self._unconfirmed[partition] = kept
            self._unconfirmed_ids = {r for r in self._unconfirmed_ids if r > row_id}

    def take_released(self) -> list[tuple[int, int]]:
        with self._lock:
            released, self._released = self._released, []
        return released

    def take_rewind(self) -> int | None:
        with self._lock:
            rewind, self._rewind_to = self._rewind_to, None
        return rewind

    def _rewind(self, row_id: int) -> None:
        self._rewind_to = row_id if self._rewind_to is None else min(self._rewind_to, row_id)

    # --- counts ---------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def unconfirmed(self) -> int:
        return len(self._unconfirmed_ids)

    @property
    def outstanding(self) -> int:
        """Rows Kafka holds or is about to: what the send window counts."""
        return len(self._in_flight) + len(self._unconfirmed_ids)

"""Ids and timestamps: the cheap ways of making them give exactly what the standard ones give."""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime, timedelta, timezone

from appliance.core import ids, timefmt


def test_new_id_is_the_canonical_text_of_a_uuid7_of_the_current_millisecond(monkeypatch):
    monkeypatch.setattr(time, "time_ns", lambda: 1_780_000_000_123_456_789)
    for _ in range(1000):
        text = ids.new_id()
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # lowercase hex, dashes where uuid puts them
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert parsed.int >> 80 == 1_780_000_000_123  # the Unix time in milliseconds


def test_new_ids_are_distinct_and_later_ones_sort_later():
    made = [ids.new_id() for _ in range(10_000)]
    assert len(set(made)) == 10_000
    time.sleep(0.002)
    assert ids.new_id() > max(made)


def test_utc_now_iso_is_now_in_the_fixed_format():
    before = datetime.now(timezone.utc)
    text = timefmt.utc_now_iso()
    after = datetime.now(timezone.utc)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", text)
    assert before - timedelta(microseconds=1) <= timefmt.parse_iso(text) <= after


def test_utc_now_iso_follows_the_clock_across_seconds(monkeypatch):
    moments = [1_780_000_000_999_999_000, 1_780_000_001_000_000_000, 1_780_000_001_000_001_000,
               1_780_000_060_500_000_000]
    monkeypatch.setattr(time, "time_ns", lambda: moments.pop(0))
    written = [timefmt.utc_now_iso() for _ in range(4)]
    assert written == ["2026-05-28T20:26:40.999999Z", "2026-05-28T20:26:41.000000Z",
                       "2026-05-28T20:26:41.000001Z", "2026-05-28T20:27:40.500000Z"]
    assert written == [timefmt.iso(timefmt.parse_iso(w)) for w in written]

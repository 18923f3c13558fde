"""The one way the appliance writes and reads instants: ISO-8601 UTC, microseconds, "Z".

Fixed width, so text order is time order (the databases sort and compare them as text).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_second: tuple[int, str] = (-1, "")  # the current second and its text, shared by all threads
ISO_WIDTH = len("2026-01-31T12:00:00.000000Z")  # every text iso() writes


def iso(moment: datetime) -> str:
    """Fixed width for every year (strftime's %Y drops the zeros of years before 1000)."""
    m = moment.astimezone(timezone.utc)
    return (f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"
            f".{m.microsecond:06d}Z")


def iso_from_epoch(seconds: float) -> str:
    return iso(datetime.fromtimestamp(seconds, timezone.utc))


def utc_now_iso() -> str:
    """Now, as ``iso`` writes it. Three per request (two events and the response): the text of
    the second is made once a second, only the microseconds each time (strftime per call
    was ~4 % of the API's CPU per request)."""
    second, micro = divmod(time.time_ns() // 1000, 1_000_000)
    return f"{second_text(second)}.{micro:06d}Z"


def second_text(second: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` (UTC) of a Unix second, made once for the current second."""
    global _second
    cached = _second
    if cached[0] != second:
        cached = _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return cached[1]


def parse_iso(text: str) -> datetime:
    """The inverse of ``iso``; ValueError for anything else."""
    return datetime.strptime(text, FORMAT).replace(tzinfo=timezone.utc)


def age_s(text: str) -> float:
    """Seconds since an instant written by ``iso``."""
    return (datetime.now(timezone.utc) - parse_iso(text)).total_seconds()

"""The one way the appliance writes and reads instants: ISO-8601 UTC, microseconds, "Z".

Fixed width, so text order is time order (the databases sort and compare them as text).
"""

from __future__ import annotations

from datetime import datetime, timezone

FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def iso(moment: datetime) -> str:
    """Fixed width for every year (strftime's %Y drops the zeros of years before 1000)."""
    m = moment.astimezone(timezone.utc)
    return (f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"
            f".{m.microsecond:06d}Z")


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).strftime(FORMAT)


def parse_iso(text: str) -> datetime:
    """The inverse of ``iso``; ValueError for anything else."""
    return datetime.strptime(text, FORMAT).replace(tzinfo=timezone.utc)


def age_s(text: str) -> float:
    """Seconds since an instant written by ``iso``."""
    return (datetime.now(timezone.utc) - parse_iso(text)).total_seconds()

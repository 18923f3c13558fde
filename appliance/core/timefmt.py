"""The one way the appliance writes and reads instants: ISO-8601 UTC, microseconds, "Z".

Fixed width, so text order is time order (the databases sort and compare them as text).
"""

from __future__ import annotations

from datetime import datetime, timezone

FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime(FORMAT)


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).strftime(FORMAT)


def parse_iso(text: str) -> datetime:
    """The inverse of ``iso``; ValueError for anything else."""
    return datetime.strptime(text, FORMAT).replace(tzinfo=timezone.utc)


def age_s(text: str) -> float:
    """Seconds since an instant written by ``iso``."""
    return (datetime.now(timezone.utc) - parse_iso(text)).total_seconds()

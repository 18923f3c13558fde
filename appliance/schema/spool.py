"""The spool file (SPOOL_DIR/spool.db): its tables, and the statistics others may read.

Written only by the API's producer side (pipeline/producer/spool.py); the agent reads the
statistics through a read-only connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from appliance.core.sqlite import read_only

FILE_NAME = "spool.db"
SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key BLOB, value BLOB NOT NULL, headers TEXT, size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (name, value) VALUES ('dropped', 0);
"""


def spool_file(directory: Path) -> Path:
    return directory / FILE_NAME


@dataclass(frozen=True)
class SpoolStats:
    depth: int  # events in the spool: waiting to be sent, or sent and not yet confirmed
    dropped: int  # events ever dropped because the spool was full


def read_stats(directory: Path) -> SpoolStats | None:
    """The spool's statistics, or None when it does not exist yet; sqlite3.Error when unreadable."""
    path = spool_file(directory)
    if not path.exists():
        return None
    with read_only(path) as db:
        depth = db.execute("SELECT COUNT(*) FROM spool").fetchone()[0]
        dropped = db.execute("SELECT value FROM meta WHERE name='dropped'").fetchone()[0]
    return SpoolStats(depth, dropped)




"""The spool files: their tables, and the statistics others may read.

One file per API process: SPOOL_DIR/spool.db for the first, spool-N.db for process N (each
process writes only its own, so none waits for another's lock). Written only by the API's
producer side (pipeline/producer/spool.py); the agent reads the statistics of all of them
through read-only connections.
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


def spool_file(directory: Path, worker: int = 0) -> Path:
    return directory / (FILE_NAME if worker == 0 else f"spool-{worker}.db")


def spool_files(directory: Path) -> dict[int, Path]:
    """Every spool file in ``directory``, by the API process it belongs to."""
    found = {0: spool_file(directory)} if spool_file(directory).exists() else {}
    for path in directory.glob("spool-*.db"):
        number = path.stem.removeprefix("spool-")
        if number.isdigit() and int(number) > 0:
            found[int(number)] = path
    return dict(sorted(found.items()))


@dataclass(frozen=True)
class SpoolStats:
    depth: int  # events in the spool: waiting to be sent, or sent and not yet confirmed
    dropped: int  # events ever dropped because the spool was full


def read_stats(directory: Path) -> SpoolStats | None:
    """The spools' statistics, summed, or None when none exists yet; sqlite3.Error when unreadable."""
    stats = [read_one(path) for path in spool_files(directory).values()]
    if not stats:
        return None
    return SpoolStats(sum(s.depth for s in stats), sum(s.dropped for s in stats))


def read_one(path: Path) -> SpoolStats:
    """The statistics of one spool file; sqlite3.Error when unreadable."""
    with read_only(path) as db:
        depth = db.execute("SELECT COUNT(*) FROM spool").fetchone()[0]
        dropped = db.execute("SELECT value FROM meta WHERE name='dropped'").fetchone()[0]
    return SpoolStats(depth, dropped)

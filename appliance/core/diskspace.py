"""Free space on every filesystem the appliance writes to, named by the settings that point
there. The agent reports it as the ``disk`` component; the API adds it to /status live, since a
full disk is also what can keep the agent from recording its own rounds."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from appliance.core.config import Settings

Result = tuple[str, str, dict[str, Any]]
MIN_FREE = 16 * 1024 * 1024  # bytes: below this SQLite's writes start to fail
LOW_FREE = 0.05  # of the filesystem: DEGRADED, while there is still time to act


def check(settings: Settings) -> Result:
    """Free space on every filesystem the appliance writes to, named by the settings that
    point there: DOWN when one is full or read-only."""
    places = {"DATA_DIR": settings.data_dir, "SPOOL_DIR": settings.spool_dir,
              "STATUS_DB_PATH": settings.status_db_path.parent,
              "METRICS_DIR": settings.metrics_dir}
    if not settings.database_url.is_postgres:
        places["DB_PATH"] = settings.db_path.parent
    filesystems: dict[int, dict[str, Any]] = {}
    for name, path in places.items():
        path = path.resolve()
        existing = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
        fs = filesystems.setdefault(os.stat(existing).st_dev, {"settings": [], "path": str(existing)})
        fs["settings"].append(name)
    worst: Result = ("UP", "", {"filesystems": list(filesystems.values())})
    for fs in filesystems.values():
        worst = min(worst, _one_filesystem(fs), key=lambda r: _SEVERITY[r[0]])
    if worst[0] == "UP":
        free = ", ".join(f"{fs['free_mb']:,.0f} MB free for {'/'.join(fs['settings'])}"
                         for fs in filesystems.values())
        return "UP", free, {"filesystems": list(filesystems.values())}
    return worst[0], worst[1], {"filesystems": list(filesystems.values())}


_SEVERITY = {"DOWN": 0, "DEGRADED": 1, "UP": 2}


def _one_filesystem(fs: dict[str, Any]) -> Result:
    stats = os.statvfs(fs["path"])
    free, total = stats.f_bavail * stats.f_frsize, stats.f_blocks * stats.f_frsize
    fs.update(free_mb=round(free / 2**20, 1), total_mb=round(total / 2**20, 1))
    names = "/".join(fs["settings"])
    if stats.f_flag & os.ST_RDONLY:
        return "DOWN", f"{names} ({fs['path']}) is on a read-only filesystem", {}
    if free < MIN_FREE:
        return "DOWN", f"no space left for {names} ({fs['path']}): {fs['free_mb']} MB free", {}
    if total and free / total < LOW_FREE:
        return "DEGRADED", f"little space left for {names} ({fs['path']}): {fs['free_mb']} MB free", {}
    return "UP", "", {}

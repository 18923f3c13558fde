"""Who may read what the appliance writes: its own user, and nobody else.

DATA_DIR holds every client's address, path and user agent (events.db), the spool, the status
database, the generated supervisord.conf and the API tokens. Every program runs with umask 077
(the command sets it before anything else: cli.py), so what it creates is 0600 and its
directories 0700; at start the appliance also takes back what an earlier version or another
umask left readable: DATA_DIR is 0700, or 0750 for the group DATA_DIR_GROUP names (e.g. the
service's group, so its operators can list it and read a log the installer placed there), and
each file it knows of is 0600.
"""

from __future__ import annotations

import grp
import logging
import os
import stat
from pathlib import Path
from typing import Iterator

from appliance.core.config import Settings

log = logging.getLogger("appliance.permissions")
UMASK = 0o077
PRIVATE_FILE, PRIVATE_DIR, GROUP_DIR = 0o600, 0o700, 0o750
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def data_files(settings: Settings) -> Iterator[Path]:
    """The files the appliance writes that it knows by name (not a log an installer put in
    DATA_DIR)."""
    layout = settings.layout
    for database in (settings.db_path, settings.status_db_path):
        yield from (Path(f"{database}{suffix}") for suffix in SQLITE_SUFFIXES)
    if settings.spool_dir.is_dir():
        yield from settings.spool_dir.iterdir()
    yield from (layout.supervisord_conf, layout.consumer_report, layout.pause_flag,
                layout.tokens, layout.supervisor_socket)
    yield from layout.root.glob("api-*.sock")


def data_dirs(settings: Settings) -> Iterator[Path]:
    """The directories the appliance makes inside DATA_DIR (never one it was pointed at
    elsewhere: SPOOL_DIR=/tmp must not make /tmp private)."""
    root = settings.data_dir.resolve()
    for directory in (settings.spool_dir, settings.metrics_dir, settings.db_path.parent,
                      settings.status_db_path.parent):
        resolved = directory.resolve()
        if resolved != root and root in resolved.parents:
            yield directory


def secure(settings: Settings) -> None:
    """DATA_DIR and what the appliance keeps in it: its own user only (and DATA_DIR_GROUP's
    members may list DATA_DIR). Creates DATA_DIR when missing; OSError when it cannot."""
    root = settings.data_dir
    root.mkdir(parents=True, exist_ok=True)
    if settings.data_dir_group is None:
        _restrict(root, PRIVATE_DIR)
    else:
        os.chown(root, -1, grp.getgrnam(settings.data_dir_group).gr_gid)
        _restrict(root, GROUP_DIR)
    for directory in data_dirs(settings):
        if directory.is_dir():
            _restrict(directory, PRIVATE_DIR)
    for path in data_files(settings):
        if path.exists() and not path.is_dir():
            _restrict(path, PRIVATE_FILE)


def _restrict(path: Path, mode: int) -> None:
    current = stat.S_IMODE(path.lstat().st_mode)
    if current != mode and path.lstat().st_uid == os.geteuid():
        os.chmod(path, mode)
        log.info("took back access to a file others could read", extra={
            "path": str(path), "from": oct(current), "to": oct(mode)})

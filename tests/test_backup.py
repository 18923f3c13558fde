"""`simple-time-service backup FILE`: a consistent copy of the SQLite audit database taken while
the consumer writes, and a restore from it (docs/operations.md)."""

from __future__ import annotations

import shutil
import sqlite3
import threading

import pytest
from procs import Appliance, Load, run_cli, wait_until

from appliance.backup import copy


def responses(path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute("SELECT count(*) FROM http_responses").fetchone()[0]


def test_the_copy_is_one_moment_of_a_database_being_written(tmp_path):
    source = tmp_path / "events.db"
    writer = sqlite3.connect(source, isolation_level=None, check_same_thread=False)
    writer.execute("PRAGMA journal_mode=wal")
    writer.execute("CREATE TABLE http_requests (id INTEGER PRIMARY KEY, n INTEGER)")
    writer.execute("CREATE TABLE http_responses (id INTEGER PRIMARY KEY, n INTEGER)")
    stop = threading.Event()

    def write():  # every transaction adds one row to each table
        n = 0
        while not stop.is_set():
            writer.execute("BEGIN")
            writer.execute("INSERT INTO http_requests (n) VALUES (?)", (n,))
            writer.execute("INSERT INTO http_responses (n) VALUES (?)", (n,))
            writer.execute("COMMIT")
            n += 1

    thread = threading.Thread(target=write)
    thread.start()
    try:
        wait_until(lambda: responses(source) > 1000, 10, 0.01, "rows being written")
        events = copy(source, tmp_path / "copy.db")
    finally:
        stop.set()
        thread.join()
    with sqlite3.connect(tmp_path / "copy.db") as db:
        requests = db.execute("SELECT count(*) FROM http_requests").fetchone()[0]
        answered = db.execute("SELECT count(*) FROM http_responses").fetchone()[0]
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert requests == answered and events == 2 * answered > 2000  # never half a transaction


def test_without_a_database_or_with_postgresql_it_says_so(tmp_path):
    result = run_cli("backup", str(tmp_path / "b.db"), env={"DATA_DIR": str(tmp_path)})
    assert result.returncode == 1 and "no audit database at" in result.stderr
    result = run_cli("backup", str(tmp_path / "b.db"),
                     env={"DATABASE_URL": "postgresql://u:secret@127.0.0.1:1/db"})
    assert result.returncode == 1 and "pg_dump" in result.stderr and "secret" not in result.stderr
    assert not (tmp_path / "b.db").exists()


@pytest.mark.broker
def test_a_backup_under_load_restores_into_a_new_appliance(tmp_path, broker):
    (tmp_path / "live").mkdir()
    live = Appliance(tmp_path / "live", broker.bootstrap).start()
    try:
        load = Load(live.port, "backup", connections=2, rate=100).start()
        wait_until(lambda: live.db_path.exists() and responses(live.db_path) > 200, 60, 0.2,
                   "rows under load")
        result = run_cli("backup", str(tmp_path / "backup.db"), env=live.env)
        load.stop()
    finally:
        live.stop()
    assert result.returncode == 0, result.stderr
    kept = responses(tmp_path / "backup.db")
    assert kept > 200 and f"{2 * kept} events" in result.stdout
    assert oct((tmp_path / "backup.db").stat().st_mode & 0o777) == "0o600"  # it holds addresses

    (tmp_path / "restored" / "data").mkdir(parents=True)
    shutil.copy(tmp_path / "backup.db", tmp_path / "restored" / "data" / "events.db")
    restored = Appliance(tmp_path / "restored", None)
    restored.start_api()
    try:
        status, body = restored.get("/events/stats")
        assert status == 200 and body["by_type"].get("http_response") == kept, body
    finally:
        restored.stop()

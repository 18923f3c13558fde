"""The consumer's database side on a real SQLite file: a refused row is a dead letter, an
unusable database is a retry, a database removed under it is written again."""

from __future__ import annotations

import sqlite3

from test_persist import HTTP, Message, event

from appliance.core.config import Settings
from appliance.pipeline.consumer import store
from appliance.pipeline.consumer.writer import BatchWriter


def writer_on(tmp_path) -> BatchWriter:
    return BatchWriter(Settings(data_dir=tmp_path))


def rows(tmp_path, sql: str) -> list[tuple]:
    with sqlite3.connect(tmp_path / "events.db") as db:
        return db.execute(sql).fetchall()


def test_a_row_the_database_refuses_becomes_a_dead_letter_and_the_rest_is_stored(tmp_path, monkeypatch):
    writer = writer_on(tmp_path)
    insert = store.insert_ignore

    def picky(model, batch_rows):
        if any(row.get("path") == "/refused" for row in batch_rows):
            raise sqlite3.IntegrityError("CHECK constraint failed")
        insert(model, batch_rows)

    monkeypatch.setattr("appliance.pipeline.consumer.writer.insert_ignore", picky)
    batch = [Message(event("http_request", HTTP), 1),
             Message(event("http_request", {**HTTP, "path": "/refused"}), 2),
             Message(event("http_request", HTTP), 3)]
    assert writer.write(batch)
    assert rows(tmp_path, "SELECT COUNT(*) FROM http_requests") == [(2,)]
    (error,), = rows(tmp_path, "SELECT error FROM dead_letters")
    assert "the database refused it: IntegrityError: CHECK constraint failed" in error
    assert writer.dead_letters == 1 and writer.last_db_error is None


def test_a_locked_database_is_a_failed_write_to_retry_and_commits_nothing(tmp_path):
    writer = writer_on(tmp_path)
    writer.store.open()
    locker = sqlite3.connect(tmp_path / "events.db", timeout=0.1, isolation_level=None)
    locker.execute("PRAGMA busy_timeout=0")
    locker.execute("BEGIN EXCLUSIVE")
    writer.store.db.execute_sql("PRAGMA busy_timeout=100")
    try:
        assert not writer.write([Message(event("http_request", HTTP), 1)])
        assert "locked" in writer.last_db_error and writer.db_errors == 1
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert writer.write([Message(event("http_request", HTTP), 1)])
    assert rows(tmp_path, "SELECT COUNT(*) FROM http_requests") == [(1,)]


def test_a_database_removed_under_the_writer_is_noticed_and_the_batch_written_again(tmp_path):
    writer = writer_on(tmp_path)
    assert writer.write([Message(event("http_request", HTTP), 1)])
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"events.db{suffix}").unlink(missing_ok=True)
    writer.store.open = lambda opened=writer.store.open: writer.store.db  # still the old file
    assert not writer.write([Message(event("http_request", {**HTTP, "path": "/second"}), 2)])
    assert "removed or replaced" in writer.last_db_error
    del writer.store.open  # the real open() notices the new inode and creates the file again
    assert writer.write([Message(event("http_request", {**HTTP, "path": "/second"}), 2)])
    assert rows(tmp_path, "SELECT path FROM http_requests") == [("/second",)]

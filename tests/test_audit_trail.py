"""The audit trail as a product, on known data sets: every /events filter, paging by cursor,
statistics checked exactly, export round trips, retention, and the schema's migration; each on
both engines a DATABASE_URL can name: a SQLite file and a real PostgreSQL (a throwaway cluster)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dataset
import psycopg
import pytest
from conftest import call_wsgi
from dataset import BASE, event, http_pair
from procs import REPO, clean_environment

from appliance.api.http.app import create_app
from appliance.api.http.services import Services
from appliance.core.config import Settings
from appliance.core.timefmt import iso
from appliance.pipeline.consumer import store
from appliance.pipeline.consumer.maintenance import Maintenance, used_bytes
from appliance.schema import audit_db, audit_read

T = [BASE + timedelta(minutes=i) for i in range(20)]


@dataclass
class Database:
    """Where a test's audit trail lives: DATA_DIR, and DATABASE_URL unless it is SQLite's file."""

    data_dir: Path
    url: str | None = None

    @property
    def env(self) -> dict[str, str]:
        return {"DATA_DIR": str(self.data_dir), **({"DATABASE_URL": self.url} if self.url else {})}

    def write(self, made: list, **kwargs) -> None:
        dataset.write(self.url or self.data_dir / "events.db", made, **kwargs)

    def rows(self, sql: str) -> list[tuple]:
        if self.url:
            with psycopg.connect(self.url) as conn:
                return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                        for row in conn.execute(sql).fetchall()]
        with sqlite3.connect(self.data_dir / "events.db") as conn:
            return conn.execute(sql).fetchall()

    def store(self) -> store.Store:
        return store.Store(Settings.from_env(self.env).database_url)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path) -> Database:
    return Database(tmp_path, request.getfixturevalue("pg_url") if request.param == "postgresql" else None)


@pytest.fixture
def trail(engine):
    """Twelve exchanges with known fields, an error, two custom events and a dead letter."""
    made = []
    clients = ["203.0.113.9", "203.0.113.77", "10.1.2.3", "2001:db8::5"]
    for i in range(12):
        made += http_pair(f"req-{i}", T[i], path=("/", "/api/items", "/api/users", "/static/x")[i % 4],
                          route=("/", "/api/<name>", "/api/<name>", "unmatched")[i % 4],
                          method=("GET", "POST")[i % 2], status=(200, 201, 404, 503)[i % 4],
                          duration_ms=float(i + 1), user_ip=clients[i % 4],
                          proxy_chain=("", "198.51.100.1")[i % 2], trace_id=f"{i:032x}")
    made.append(event("error", "req-3", T[3], {"method": "POST", "route": "unmatched", "path": "/static/x",
                                               "status": 503, "error": "KeyError", "message": "k"}))
    made.append(event("deploy.done", "dep-1", T[13], {"v": 1}))
    made.append(event("deploy.started", "dep-2", T[14], {"v": 2}))
    engine.write(made, raw=[b"\x00junk"])
    return engine


def get(trail: Database, path: str, query: str = "", **env):
    # Not about who may read (tests/test_planes.py is): the admin routes open unless a test
    # sets the mode.
    settings = Settings.from_env({"ADMIN_ON_PUBLIC_PORT": "open", **trail.env, **env})
    return call_wsgi(create_app(settings, Services(settings)), "GET", path, query=query)


def ids(response) -> list[tuple[str, str]]:
    return [(e["event_type"], e["request_id"]) for e in response.json()["events"]]


@pytest.mark.parametrize(("query", "expected"), [
    ("user_ip=203.0.113.9&type=http_response", [f"req-{i}" for i in (8, 4, 0)]),
    ("user_ip=203.0.113.0/24&type=http_response", [f"req-{i}" for i in (9, 8, 5, 4, 1, 0)]),
    ("user_ip=2001:db8::/32&type=http_response", ["req-11", "req-7", "req-3"]),
    ("user_ip=::ffff:10.1.2.3&type=http_response", ["req-10", "req-6", "req-2"]),
    ("path=/api/&type=http_response", [f"req-{i}" for i in (10, 9, 6, 5, 2, 1)]),
    ("path=/api/u&type=http_response", ["req-10", "req-6", "req-2"]),
    ("route=/api/<name>&type=http_request", [f"req-{i}" for i in (10, 9, 6, 5, 2, 1)]),
    ("method=POST&type=http_response", [f"req-{i}" for i in (11, 9, 7, 5, 3, 1)]),
    ("status=404", ["req-10", "req-6", "req-2"]),
    ("status=5xx&type=http_response", ["req-11", "req-7", "req-3"]),
    ("status=2xx&method=GET&type=http_response", ["req-8", "req-4", "req-0"]),
    ("request_id=req-3&type=http_request", ["req-3"]),
    (f"trace_id={5:032x}&type=http_response", ["req-5"]),
    (f"after={iso(T[8])}&before={iso(T[10])}&type=http_response", ["req-9", "req-8"]),
    ("type=deploy.done", ["dep-1"]),
    ("type=custom", ["dep-2", "dep-1"]),
])
def test_each_filter_finds_exactly_its_rows(trail, query, expected):
    response = get(trail, "/events", query)
    assert response.status == 200, response.json()
    assert [request_id for _, request_id in ids(response)] == expected


def test_filters_apply_to_every_table_they_concern_and_leave_the_others_out(trail):
    response = get(trail, "/events", "status=503")
    assert ids(response) == [("http_response", "req-11"), ("http_response", "req-7"),
                             ("http_response", "req-3"), ("error", "req-3")]
    assert {t for t, _ in ids(get(trail, "/events", "request_id=req-3"))} == {
        "http_request", "http_response", "error"}


@pytest.mark.parametrize(("query", "name"), [
    ("user_ip=999.1.1.1", "user_ip"), ("user_ip=10.0.0.0/99", "user_ip"), ("path=api", "path"),
    ("status=600", "status"), ("status=5x", "status"), ("status=abc", "status"),
    ("method=G ET", "method"), ("request_id=%3Cx%3E", "request_id"), ("trace_id=xyz", "trace_id"),
    ("limit=0", "limit"), ("limit=501", "limit"), ("order=random", "order"),
    ("before=yesterday", "before"), ("type=Bad", "type"), ("route=", "route"),
    ("cursor=notacursor", "cursor"), ("colour=blue", "colour"),
])
def test_a_bad_value_is_a_400_that_names_the_parameter(trail, query, name):
    response = get(trail, "/events", query)
    assert response.status == 400 and name in response.json()["error"], response.json()


def test_following_next_gives_every_row_once_in_order(trail):
    seen, query = [], "limit=4"
    while True:
        page = get(trail, "/events", query).json()
        seen += [(e["event_type"], e["request_id"], e["occurred_at"]) for e in page["events"]]
        if page["next"] is None:
            break
        query = f"limit=4&cursor={page['next']}"
    everything = get(trail, "/events", "limit=500").json()["events"]
    assert seen == [(e["event_type"], e["request_id"], e["occurred_at"]) for e in everything]
    assert len(seen) == len(set(seen)) == 27  # 12 x 2 + 1 error + 2 custom


def test_rows_arriving_while_paging_are_neither_repeated_nor_make_others_skipped(trail):
    first = get(trail, "/events", "limit=5&type=http_response").json()
    trail.write(http_pair("late-new", T[19]) + http_pair("late-old", T[0] - timedelta(minutes=5)))
    rest, query = [], f"limit=5&type=http_response&cursor={first['next']}"
    while query:
        page = get(trail, "/events", query).json()
        rest += [e["request_id"] for e in page["events"]]
        query = page["next"] and f"limit=5&type=http_response&cursor={page['next']}"
    original = [f"req-{i}" for i in range(11, -1, -1)]
    paged = [e["request_id"] for e in first["events"]] + rest
    assert [r for r in paged if r.startswith("req-")] == original  # each once, none skipped
    assert "late-new" not in paged  # newer than where paging began: on the first page of a new search
    assert paged[-1] == "late-old"  # older than the cursor: met on the way


def test_a_cursor_only_continues_its_own_search(trail):
    page = get(trail, "/events", "limit=2&type=http_response").json()
    response = get(trail, "/events", f"limit=2&type=http_request&cursor={page['next']}")
    assert response.status == 400 and "cursor belongs to other filters" in response.json()["error"]


def test_statistics_are_exact(trail):
    stats = get(trail, "/events/stats", f"since={iso(T[0])}&until={iso(T[12])}").json()
    assert stats["total"] == 12 * 2 + 1  # the pairs and the error (the rest is outside the window)
    assert stats["by_type"] == {"http_request": 12, "http_response": 12, "error": 1, "dead_letter": 0}
    assert stats["by_status_class"] == {"2xx": 6, "4xx": 3, "5xx": 3}
    assert stats["top_clients"][:2] == [{"user_ip": "10.1.2.3", "count": 3},
                                        {"user_ip": "2001:db8::5", "count": 3}]
    assert {c["count"] for c in stats["top_clients"]} == {3}
    assert stats["top_routes"] == [{"route": "/api/<name>", "count": 6}, {"route": "/", "count": 3},
                                   {"route": "unmatched", "count": 3}]
    assert stats["top_proxy_chains"] == [{"proxy_chain": "198.51.100.1", "count": 6}]
    # durations 1..12 ms: nearest rank p50 = 6th, p95 = 12th, p99 = 12th
    assert stats["duration_ms"] == {"p50": 6.0, "p95": 12.0, "p99": 12.0}


def test_statistics_of_the_last_hour_by_default_and_of_an_empty_window(trail):
    stats = get(trail, "/events/stats").json()  # the events are days old; the dead letter is new
    assert stats["total"] == 1 and stats["by_type"]["dead_letter"] == 1
    assert stats["duration_ms"] == {"p50": None, "p95": None, "p99": None}
    since, until = datetime.fromisoformat(stats["since"][:-1]), datetime.fromisoformat(stats["until"][:-1])
    assert until - since == timedelta(hours=1)


def test_percentiles_are_the_nearest_rank_of_many_durations(engine):
    made = []
    for i in range(1000):
        made += http_pair(f"d-{i}", BASE + timedelta(milliseconds=i), duration_ms=i / 10)
    engine.write(made)
    stats = get(engine, "/events/stats", f"since={iso(BASE)}&until={iso(BASE + timedelta(hours=1))}").json()
    assert stats["duration_ms"] == {"p50": 49.9, "p95": 94.9, "p99": 98.9}


def test_export_round_trips_the_table_over_http_and_the_command(trail):
    exported = get(trail, "/events/export").body.decode().splitlines()
    over_http = [json.loads(line) for line in exported]
    everything = get(trail, "/events", "limit=500").json()["events"]
    assert over_http == list(reversed(everything))  # oldest first
    result = subprocess.run([sys.executable, "-m", "appliance", "events", "export"], cwd=REPO,
                            capture_output=True, text=True, timeout=60,
                            env=clean_environment(trail.env))
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == over_http


def test_export_as_csv_with_a_window_and_a_type(trail, tmp_path):
    out = tmp_path / "out.csv"
    result = subprocess.run([sys.executable, "-m", "appliance", "events", "export", "--type", "http_response",
                             "--since", iso(T[2]), "--until", iso(T[5]), "--format", "csv",
                             "--output", str(out)], cwd=REPO, capture_output=True, text=True, timeout=60,
                            env=clean_environment(trail.env))
    assert result.returncode == 0, result.stderr
    import csv
    rows = list(csv.DictReader(out.open()))
    assert [r["request_id"] for r in rows] == ["req-2", "req-3", "req-4"]
    assert rows[0]["status"] == "404" and rows[0]["user_ip"] == "10.1.2.3"


def test_export_is_token_protected_when_api_token_is_set(trail):
    assert get(trail, "/events/export", API_TOKEN="s3cret-token",
               ADMIN_ON_PUBLIC_PORT="token").status == 401


def test_a_huge_export_runs_in_constant_memory(tmp_path):
    def fill(count: int, db: Path) -> None:
        made = []
        for i in range(count):
            made += http_pair(f"m-{i}", BASE + timedelta(milliseconds=i), path="/" + "p" * 200)
            if len(made) >= 20_000:
                dataset.write(db, made)
                made = []
        if made:
            dataset.write(db, made)

    def peak_rss_kb(data_dir: Path) -> int:
        proc = subprocess.Popen([sys.executable, "-m", "appliance", "events", "export", "--output",
                                 os.devnull], cwd=REPO, env=clean_environment({"DATA_DIR": str(data_dir)}))
        _, status, usage = os.wait4(proc.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        return usage.ru_maxrss

    small, large = tmp_path / "small", tmp_path / "large"
    fill(2_000, small / "events.db")
    fill(100_000, large / "events.db")  # 200,000 events, ~90 MB of rows
    assert peak_rss_kb(large) - peak_rss_kb(small) < 15_000  # KB: it does not grow with the data


def test_retention_deletes_exactly_what_is_older_than_retention_days(engine):
    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    old, young = now - timedelta(days=31), now - timedelta(days=29)
    made = http_pair("old-1", old) + http_pair("young-1", young) + [
        event("deploy.done", "old-2", old, {}), event("deploy.done", "young-2", young, {})]
    engine.write(made)
    engine.write([], persisted_at=old, raw=[b"old junk"])
    engine.write([], persisted_at=young, raw=[b"young junk"])
    settings = Settings.from_env({**engine.env, "RETENTION_DAYS": "30"})
    keeper = engine.store()
    maintenance = Maintenance(settings, keeper)
    while maintenance.step(now):
        pass
    assert engine.rows("SELECT request_id FROM http_requests") == [("young-1",)]
    assert engine.rows("SELECT request_id FROM http_responses") == [("young-1",)]
    assert engine.rows("SELECT request_id FROM custom_events") == [("young-2",)]
    assert engine.rows("SELECT raw FROM dead_letters") == [(b"young junk",)]
    assert maintenance.pruned == {"http_requests": 1, "http_responses": 1, "custom_events": 1,
                                  "dead_letters": 1}
    keeper.close()


def test_past_db_max_mb_the_oldest_go_first_and_the_file_shrinks(tmp_path):
    made = []
    for i in range(6000):  # ~6 MB of rows
        made += http_pair(f"s-{i:05d}", BASE + timedelta(seconds=i), path="/" + "x" * 400)
    dataset.write(tmp_path / "events.db", made)
    size_before = (tmp_path / "events.db").stat().st_size
    settings = Settings.from_env({"DATA_DIR": str(tmp_path), "DB_MAX_MB": "2", "RETENTION_DAYS": "0"})
    keeper = store.Store(settings.db_path)
    maintenance = Maintenance(settings, keeper)
    while maintenance.step():
        pass
    db = keeper.open()
    assert used_bytes(db) <= 2 * 2**20
    kept = [r[0] for r in db.execute_sql("SELECT request_id FROM http_responses ORDER BY id")]
    assert kept == [f"s-{i:05d}" for i in range(6000 - len(kept), 6000)]  # the newest, all of them
    db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    assert (tmp_path / "events.db").stat().st_size < size_before / 2
    keeper.close()


def test_a_version_1_database_is_migrated_and_its_rows_keep_working(tmp_path):
    path = tmp_path / "events.db"
    db = sqlite3.connect(path)
    db.executescript((REPO / "tests" / "fixtures" / "audit_db_v1.sql").read_text())
    db.execute("INSERT INTO http_responses (event_id, request_id, occurred_at, trace_id, hostname, "
               "persisted_at, method, route, path, query, user_ip, proxy_chain, user_agent, bytes, "
               "status, duration_ms) VALUES ('e1', 'v1-req', ?, NULL, 'h', ?, 'GET', '/', '/', '', "
               "'10.9.8.7', '', 'ua', 0, 200, 1.5)", (iso(BASE), iso(BASE)))
    db.commit()
    db.close()
    settings = Settings.from_env({"DATA_DIR": str(tmp_path)})
    keeper = store.Store(path)
    keeper.open()
    maintenance = Maintenance(settings, keeper)
    while maintenance.step():
        pass
    keeper.close()
    check = sqlite3.connect(path)
    assert check.execute("SELECT value FROM schema_meta WHERE name='schema_version'").fetchone() == ("4",)
    assert check.execute("PRAGMA auto_vacuum").fetchone() == (2,)
    indexes = {r[0] for r in check.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "httpresponse_status_occurred_at" in indexes and "httpresponse_trace_id" in indexes
    assert "httpresponse_stats" in indexes  # version 3
    assert "httpresponse_injected_kind_occurred_at" in indexes  # version 4
    columns = {r[1] for r in check.execute("PRAGMA table_info(dead_letters)")}
    assert "replayed_at" in columns
    response = get(Database(tmp_path), "/events", "user_ip=10.9.8.0/24")
    assert [e["request_id"] for e in response.json()["events"]] == ["v1-req"]
    assert "injected" not in response.json()["events"][0]
    assert get(Database(tmp_path), "/events", "injected=true").json()["events"] == []
    assert len(get(Database(tmp_path), "/events", "injected=false").json()["events"]) == 1


def test_a_database_of_a_newer_version_is_refused_not_changed(engine):
    keeper = engine.store()
    keeper.open()
    keeper.db.execute_sql("UPDATE schema_meta SET value = '99' WHERE name = 'schema_version'")
    keeper.close()
    with pytest.raises(store.NewerSchema, match="schema version 99"):
        engine.store().open()
    assert engine.rows("SELECT value FROM schema_meta") == [("99",)]


def test_opening_the_schema_again_changes_nothing(engine):
    engine.write(http_pair("kept", T[0]))
    for _ in range(2):
        keeper = engine.store()
        keeper.open()
        keeper.close()
    assert engine.rows("SELECT request_id FROM http_responses") == [("kept",)]
    version = engine.rows("SELECT value FROM schema_meta WHERE name = 'schema_version'")
    assert version == [(str(audit_db.SCHEMA_VERSION),)]


@pytest.mark.parametrize(("recent", "most"), [(3, 3), (3, 12), (5, 40), (2000, 20_000)])
def test_a_range_filter_gives_the_same_pages_whichever_way_it_is_read(engine, monkeypatch, recent, most):
    """Newest rows first, a wider window, or the filter's own index: the same rows in order."""
    made = []
    for i in range(60):
        made += http_pair(f"r-{i:02d}", BASE + timedelta(seconds=i), path=("/a/x", "/b/y", "/a/z")[i % 3],
                          status=(200, 503, 404, 201)[i % 4], user_ip=f"10.0.{i % 5}.1")
    engine.write(made)
    monkeypatch.setattr(audit_read, "RECENT_ROWS", recent)
    monkeypatch.setattr(audit_read, "RECENT_MAX", most)
    for query, expected in (("path=/a/", [i for i in range(60) if i % 3 != 1]),
                            ("status=2xx", [i for i in range(60) if i % 4 in (0, 3)]),
                            ("user_ip=10.0.3.0/24", [i for i in range(60) if i % 5 == 3])):
        seen, page_query = [], f"{query}&type=http_response&limit=7"
        while page_query:
            page = get(engine, "/events", page_query).json()
            seen += [e["request_id"] for e in page["events"]]
            page_query = page["next"] and f"{query}&type=http_response&limit=7&cursor={page['next']}"
        assert seen == [f"r-{i:02d}" for i in reversed(expected)], query

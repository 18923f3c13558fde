"""`simple-time-service events export`: the audit trail out of the database, in constant memory.

Reads DB_PATH through a read-only connection (the appliance may be running, or not), oldest
first, a page at a time, and writes JSON lines (the same objects as /events and
/events/export) or CSV (one header, every column any event has). With a terminal on stderr, a
progress line says how far it is.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from typing import IO, Any, Iterator

from appliance.core.config import Settings
from appliance.core.database import ERRORS as DB_ERRORS
from appliance.core.database import exists, open_database
from appliance.core.database_url import describe_error
from appliance.core.timefmt import iso
from appliance.schema import audit_db, audit_read, vocabulary
from appliance.schema.audit_read import Search

CSV_COLUMNS = ("event_type", "event_id", "occurred_at", "persisted_at", "request_id", "trace_id",
               "hostname", "method", "route", "path", "query", "status", "duration_ms",
               "user_ip", "proxy_chain", "user_agent", "bytes", "error", "message", "payload",
               "topic", "partition", "offset", "raw", "received_at", "dedup_key")
PROGRESS_EVERY = 0.2  # seconds between progress lines


def add_arguments(command: argparse.ArgumentParser) -> None:
    sub = command.add_subparsers(dest="events_command", metavar="ACTION", required=True)
    export = sub.add_parser("export", help="write events to stdout or a file",
                            description="Write persisted events, oldest first, as JSON lines or CSV.")
    export.add_argument("--since", type=instant, help="from this ISO-8601 time (inclusive)")
    export.add_argument("--until", type=instant, help="up to this ISO-8601 time (exclusive)")
    export.add_argument("--type", dest="event_type", type=event_type,
                        help="http_request, http_response, error, custom, dead_letter or a custom type")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument("--output", metavar="FILE", help="default: stdout")


def instant(raw: str) -> str:
    try:
        return iso(vocabulary.parse_instant(raw))
    except ValueError:
        raise argparse.ArgumentTypeError(vocabulary.INSTANT_EXPECTED) from None


def event_type(raw: str) -> str:
    try:
        audit_read.tables_for(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return raw


def search_for(args: argparse.Namespace) -> Search:
    tables, custom = audit_read.tables_for(args.event_type)
    return Search(tables=tables, custom_type=custom, since=args.since, before=args.until,
                  ascending=True)


def run(settings: Settings, args: argparse.Namespace) -> int:
    url = settings.database_url
    if not exists(url):
        print(f"simple-time-service: no events database at {url.path}", file=sys.stderr)
        return 1
    search = search_for(args)
    audit_db.database.initialize(open_database(url, readonly=True, purpose="export"))
    output = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout
    try:
        with audit_db.database.connection_context():
            progress = Progress(count(search)) if sys.stderr.isatty() else None
            written = write(audit_read.iterate(search), output, args.format, progress)
    except DB_ERRORS as exc:
        print(f"\nsimple-time-service: cannot read {url.redacted()}: {describe_error(exc, url)}",
              file=sys.stderr)
        return 1
    finally:
        if args.output:
            output.close()
    if progress:
        progress.done(written)
    return 0


def count(search: Search) -> int:
    return sum(audit_read.filtered(model, search).count() for model in search.selected())


def write(rows: Iterator[dict[str, Any]], output: IO[str], form: str, progress) -> int:
    writer = csv.DictWriter(output, CSV_COLUMNS, extrasaction="ignore") if form == "csv" else None
    if writer:
        writer.writeheader()
    written = 0
    for row in rows:
        if writer:
            writer.writerow({k: json.dumps(v) if k == "payload" else v for k, v in row.items()})
        else:
            output.write(audit_read.jsonl_line(row).decode())
        written += 1
        if progress:
            progress.show(written)
    return written


class Progress:
    """One line on stderr, rewritten: how many of how many, and how fast."""

    def __init__(self, total: int) -> None:
        self.total, self.started, self.shown = total, time.monotonic(), 0.0

    def show(self, written: int) -> None:
        now = time.monotonic()
        if now - self.shown >= PROGRESS_EVERY:
            self.shown = now
            share = written / self.total * 100 if self.total else 100
            bar = "#" * int(share / 5)
            rate = written / max(now - self.started, 1e-9)
            print(f"\r[{bar:<20}] {written:,}/{self.total:,} events ({share:.0f}%, {rate:,.0f}/s)",
                  end="", file=sys.stderr, flush=True)

    def done(self, written: int) -> None:
        elapsed = time.monotonic() - self.started
        print(f"\rexported {written:,} events in {elapsed:.1f} s" + " " * 30, file=sys.stderr)

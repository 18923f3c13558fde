"""The dashboard's command-line options, shared by the ``dashboard`` script and
``simple-time-service dashboard``. Imports nothing heavy: building the CLI parser stays fast."""

from __future__ import annotations

import argparse

DEFAULT_URL = "http://127.0.0.1:8081"  # the appliance's admin plane (ADMIN_PORT) on this host
DEFAULT_INTERVAL = 1.0  # seconds between refreshes: a new request shows within ~1 s
SERVE_HOST, SERVE_PORT = "127.0.0.1", 8090  # --serve: this host only, unless told otherwise


def interval(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.2 <= value <= 3600:  # also rejects nan
        raise argparse.ArgumentTypeError("expected a number of seconds from 0.2 to 3600")
    return value


def add_arguments(parser: argparse.ArgumentParser, token_default: str | None = None,
                  url_default: str = DEFAULT_URL, token_help: str = "$API_TOKEN") -> None:
    parser.add_argument("--url", default=url_default,
                        help="the appliance's admin plane (default "
                             f"{url_default or 'this host appliance: ADMIN_HOST:ADMIN_PORT'})")
    parser.add_argument("--token", default=token_default,
                        help=f"a read token of the appliance (default: {token_help})")
    parser.add_argument("--interval", type=interval, default=DEFAULT_INTERVAL,
                        help=f"seconds between refreshes (default {DEFAULT_INTERVAL:g})")
    parser.add_argument("--serve", action="store_true",
                        help="serve the dashboard to a browser (textual-serve) instead of this "
                             "terminal")
    parser.add_argument("--host", default=SERVE_HOST,
                        help=f"with --serve: the address to listen on (default {SERVE_HOST})")
    parser.add_argument("--port", type=int, default=SERVE_PORT,
                        help=f"with --serve: the port (default {SERVE_PORT})")

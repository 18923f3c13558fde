"""The dashboard's command-line options, shared by the ``dashboard`` script and
``simple-time-service dashboard``. Imports nothing heavy: building the CLI parser stays fast."""

from __future__ import annotations

import argparse

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_INTERVAL = 1.0  # seconds between refreshes: a new request shows within ~1 s


def interval(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.2 <= value <= 3600:  # also rejects nan
        raise argparse.ArgumentTypeError("expected a number of seconds from 0.2 to 3600")
    return value


def add_arguments(parser: argparse.ArgumentParser, token_default: str | None = None) -> None:
    parser.add_argument("--url", default=DEFAULT_URL,
                        help=f"the appliance's base URL (default {DEFAULT_URL})")
    parser.add_argument("--token", default=token_default,
                        help="bearer token for /events (default: $API_TOKEN)")
    parser.add_argument("--interval", type=interval, default=DEFAULT_INTERVAL,
                        help=f"seconds between refreshes (default {DEFAULT_INTERVAL:g})")

"""The Textual app: thin. It holds the client, pushes the main screen, and quits on ``q``.

``main()`` is the ``dashboard`` console script; ``simple-time-service dashboard`` calls ``run()``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, Mapping

from textual.app import App
from textual.binding import Binding

from .client import ApplianceClient
from .options import add_arguments
from .screens.main import MainScreen

HISTORY_MINUTES = 10  # what the sparklines cover, and the /status history window asked for


class DashboardApp(App[None]):
    """Pass in the client (tests pass a fake one) and, for fixed screenshots, a fixed clock."""

    CSS_PATH = "dashboard.tcss"
    TITLE = "simple-time-service dashboard"
    BINDINGS = [Binding("q", "quit", "Quit")]

    def __init__(self, client: ApplianceClient, *, interval: float = 2.0,
                 clock: Callable[[], float] = time.time,
                 history_minutes: int = HISTORY_MINUTES) -> None:
        super().__init__()
        self.client = client
        self.interval = interval
        self.clock = clock
        self.history_minutes = history_minutes

    def on_mount(self) -> None:
        self.push_screen(MainScreen(self.client, interval=self.interval, clock=self.clock,
                                    history_minutes=self.history_minutes))


def run(url: str, token: str | None, interval: float, serve_on: tuple[str, int] | None = None) -> int:
    """The dashboard in this terminal, or with ``serve_on`` (host, port) in a browser."""
    if serve_on is not None:
        from .serve import serve
        return serve(url, token, interval, *serve_on)
    DashboardApp(ApplianceClient(url, token), interval=interval).run()
    return 0


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog="dashboard", description="Live terminal dashboard of a simple-time-service appliance.")
    add_arguments(parser, token_default=environ.get("API_TOKEN") or None)
    args = parser.parse_args(argv)
    return run(args.url, args.token, args.interval, (args.host, args.port) if args.serve else None)


if __name__ == "__main__":
    sys.exit(main())

"""The dashboard in a browser: ``simple-time-service dashboard --serve`` (textual-serve).

textual-serve runs one dashboard process per browser tab and relays its screen over a
websocket; its JavaScript and fonts come from its own package. Its page asks Google for the
Roboto Mono font, which a host without outside access cannot reach: the page served here is the
package's own with that link replaced by the same font from the package (the appliance runs
where nothing outside can be reached, and the browser should not try).

Bound to 127.0.0.1 by default: what it serves is the dashboard, with the token it was given,
to anyone who reaches the port (docs/dashboard.md says how to put it behind a proxy that asks
for credentials). The token reaches the dashboard processes in their environment, never on a
command line (/proc/PID/cmdline is world-readable).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import tempfile
from pathlib import Path

import textual_serve
from textual_serve.server import Server

PACKAGE = Path(textual_serve.__file__).parent
PAGE = "app_index.html"
GOOGLE_FONTS = re.compile(r'<link\s+rel="stylesheet"\s+href="https://fonts\.googleapis\.com/[^"]*"\s*/>')
LOCAL_FONT = ('<style>@font-face { font-family: "Roboto Mono"; '
              'src: url("{{ config.static.url }}fonts/RobotoMono-VariableFont_wght.ttf"); }</style>')


class PageChanged(RuntimeError):
    """textual-serve's page is no longer the one this module knows how to serve offline."""


def offline_templates(directory: Path) -> Path:
    """textual-serve's templates, with the page's Google font replaced by the packaged one."""
    page = (PACKAGE / "templates" / PAGE).read_text()
    offline, replaced = GOOGLE_FONTS.subn(LOCAL_FONT, page)
    if replaced != 1 or "https://" in offline.replace("http://www.w3.org/2000/svg", ""):
        raise PageChanged(f"textual-serve's {PAGE} changed: it would load files from elsewhere")
    (directory / PAGE).write_text(offline)
    return directory


def command(url: str, interval: float) -> str:
    return shlex.join([sys.executable, "-m", "dashboard", "--url", url, "--interval", f"{interval:g}"])


def serve(url: str, token: str | None, interval: float, host: str, port: int) -> int:
    """Serve the dashboard of ``url`` on http://host:port until interrupted."""
    if token:
        os.environ["API_TOKEN"] = token  # the dashboard processes' --token default
    with tempfile.TemporaryDirectory(prefix="sts-dashboard-serve-") as scratch:
        server = Server(command(url, interval), host=host, port=port,
                        title="simple-time-service dashboard",
                        statics_path=PACKAGE / "static",
                        templates_path=offline_templates(Path(scratch)))
        server.serve()
    return 0

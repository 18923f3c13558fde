"""The API process: build the services, serve, shut down in order."""

from __future__ import annotations

import logging
import sys

from . import logs
from .app import Services, create_app
from .config import Settings
from .server import ApiServer, bind

log = logging.getLogger("appliance.api")


def main(settings: Settings) -> int:
    logs.configure(settings.log_level)
    try:
        sock = bind(settings.host, settings.port)
    except OSError as exc:
        print(f"simple-time-service: cannot listen on {settings.host}:{settings.port}: "
              f"{exc.strerror or exc} (set HOST/PORT)", file=sys.stderr)
        return 1
    services = Services(settings)
    server = ApiServer(create_app(settings, services), settings, services.lifecycle, sock)
    return server.serve()

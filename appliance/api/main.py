"""The API program: bind, start the event sink, serve, shut down in order.

With more than one API process (WEB_PROCESSES, api/workers.py) the parent binds and each
worker serves the socket it inherited; otherwise the one process does both.
"""

from __future__ import annotations

import socket

from appliance.api.app import create_app
from appliance.api.server import ApiServer, bind
from appliance.api.services import Services
from appliance.api.sink import EventSink
from appliance.api.workers import WorkerSlot
from appliance.core.config import Settings
from appliance.core.process import Runtime, StartupError


def listen(settings: Settings) -> socket.socket:
    try:
        return bind(settings.host, settings.port)
    except OSError as exc:
        raise StartupError(f"cannot listen on {settings.host}:{settings.port}: "
                           f"{exc.strerror or exc} (check HOST and PORT)", code=1) from None


def serve(runtime: Runtime, settings: Settings, sink: EventSink,
          slot: WorkerSlot | None = None) -> int:
    """Serve until SIGTERM; the sink is started once the port is ours and closed last."""
    sock = slot.listening_socket() if slot else listen(settings)
    services = Services(settings, sink=sink)
    sink.start()
    server = ApiServer(create_app(settings, services), settings, services.lifecycle, sock,
                       on_stopped=sink.close, balance=slot.balance() if slot else None)
    runtime.on_signal(server.signalled)
    return server.serve(install_signals=False)

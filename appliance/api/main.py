"""The API program: bind, start the event sink, serve, shut down in order."""

from __future__ import annotations

from appliance.api.app import create_app
from appliance.api.server import ApiServer, bind
from appliance.api.services import Services
from appliance.api.sink import EventSink
from appliance.core.config import Settings
from appliance.core.process import Runtime, StartupError


def serve(runtime: Runtime, settings: Settings, sink: EventSink) -> int:
    """Serve until SIGTERM; the sink is started once the port is ours and closed last."""
    try:
        sock = bind(settings.host, settings.port)
    except OSError as exc:
        raise StartupError(f"cannot listen on {settings.host}:{settings.port}: "
                           f"{exc.strerror or exc} (check HOST and PORT)", code=1) from None
    services = Services(settings, sink=sink)
    sink.start()
    server = ApiServer(create_app(settings, services), settings, services.lifecycle, sock,
                       on_stopped=sink.close)
    runtime.on_signal(server.handle_signal)
    return server.serve(install_signals=False)

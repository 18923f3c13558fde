"""A client for this DATA_DIR's supervisord, over its unix socket (XML-RPC).

Used by `down` and `ps` and by the agent (process states, broker recycles). Every call raises
NotRunning when nobody answers, whatever the transport said.
"""

from __future__ import annotations

import xmlrpc.client
from typing import Any

from supervisor.xmlrpc import SupervisorTransport

from appliance.core.config import Settings

# supervisord's process states, as the agent reports them.
STATE_WORDS = {"RUNNING": "UP", "STARTING": "DEGRADED", "BACKOFF": "DEGRADED",
               "STOPPING": "DEGRADED", "STOPPED": "DOWN", "EXITED": "DOWN", "FATAL": "DOWN",
               "UNKNOWN": "DOWN"}


class NotRunning(Exception):
    """No supervisord answers on this DATA_DIR's socket."""


class _Proxy:
    def __init__(self, proxy: xmlrpc.client.ServerProxy) -> None:
        self._proxy = proxy

    def __getattr__(self, name: str) -> Any:
        return _Method(getattr(self._proxy, name))


class _Method:
    def __init__(self, method) -> None:
        self._method = method

    def __getattr__(self, name: str) -> "_Method":
        return _Method(getattr(self._method, name))

    def __call__(self, *args):
        try:
            return self._method(*args)
        except (OSError, xmlrpc.client.ProtocolError) as exc:
            raise NotRunning(str(exc)) from None


def client(settings: Settings) -> _Proxy:
    """XML-RPC to this DATA_DIR's supervisord; calls raise NotRunning when nobody answers."""
    socket = settings.layout.supervisor_socket.resolve()
    transport = SupervisorTransport(None, None, f"unix://{socket}")
    return _Proxy(xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport))


def processes(settings: Settings) -> list[dict[str, Any]]:
    return client(settings).supervisor.getAllProcessInfo()

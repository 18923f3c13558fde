"""Facts about the host this process runs on, computed once at start-up."""

from __future__ import annotations

import platform
import socket
from dataclasses import dataclass

from appliance.core.config import Settings

# A documentation address (RFC 5737): connecting a UDP socket to it only asks the kernel which
# local address would route there; no packet is sent.
_ROUTE_PROBE = ("192.0.2.1", 9)


@dataclass(frozen=True)
class HostInfo:
    hostname: str
    os: str
    pod_ip: str | None


def outward_address() -> str | None:
    """The address of the interface that routes outward, or None without a route."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(_ROUTE_PROBE)
            address = probe.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("0.") else address


def host_info(settings: Settings) -> HostInfo:
    return HostInfo(
        hostname=socket.gethostname(),
        os=platform.system(),
        pod_ip=settings.pod_ip or settings.host_ip or outward_address(),
    )

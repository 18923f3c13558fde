"""simple-time-service: request metadata + event audit appliance."""

from appliance.core.version import __version__

__all__ = ["__version__"]

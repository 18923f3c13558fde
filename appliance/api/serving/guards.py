"""The listener's guards: the accept loop must not spin when the process runs out of file
descriptors, and the process must have the descriptors CONNECTION_LIMIT needs. (What a client
may not do with a connection is serving/connections.py.)
"""

from __future__ import annotations

import errno
import logging
import resource
import time
from typing import Any, Callable

from appliance.core import sensors
from appliance.core.logs import RateLimitFilter
from appliance.core.process import StartupError

log = logging.getLogger("appliance.server.guards")
log.addFilter(RateLimitFilter(30.0))
FD_HEADROOM = 64  # descriptors besides connections: listener, spool, metrics, Kafka, pipes
ACCEPT_PAUSE = 0.5  # seconds without accepting after the process ran out of descriptors


class AcceptGuard:
    """When accept() fails for lack of descriptors, stop accepting for ACCEPT_PAUSE: the
    listener stays readable otherwise, and the loop would spin logging the same error."""

    def __init__(self, server) -> None:
        self.server = server  # whose ``accepting`` is turned off and on again
        self.resume_at: float | None = None

    def accept(self, accept: Callable[[], Any]) -> Any:
        """``accept()``, or None when the process is out of descriptors."""
        try:
            return accept()
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            self.server.accepting = False
            self.resume_at = time.monotonic() + ACCEPT_PAUSE
            sensors.on_accept_error()
            log.warning("out of file descriptors: not accepting for a moment",
                        extra={"error": str(exc), "pause_s": ACCEPT_PAUSE})
            return None

    def tick(self) -> None:
        if self.resume_at is not None and time.monotonic() >= self.resume_at:
            self.resume_at = None
            self.server.accepting = True


def ensure_fd_limit(connection_limit: int) -> None:
    """Raise the soft limit on open files to what CONNECTION_LIMIT needs when the hard limit
    allows; a one-line startup error naming both numbers when it does not."""
    needed = connection_limit + FD_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise StartupError(f"CONNECTION_LIMIT={connection_limit} needs {needed} open files, but the "
                           f"limit is {soft} (hard limit {hard}): raise it (ulimit -n) or lower "
                           f"CONNECTION_LIMIT to at most {hard - FD_HEADROOM}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    log.info("raised the open-file limit", extra={"from": soft, "to": needed, "hard": hard})

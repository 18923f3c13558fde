"""Rate limits on the routes that change something or cost the database a scan: per token, or
per client address without one; 429 with Retry-After beyond them. GET / is never limited.

A token bucket per (kind, key): RATE_LIMIT_WRITES per second for /kafka/publish,
RATE_LIMIT_READS for /events/stats and /events/export, each with a burst of twice its rate
(at least 1). Counted per API process: with WEB_PROCESSES=N a client spread over the workers
gets up to N times the rate. At most MAX_KEYS keys are remembered (the least recently used go
first), so no client can make the table grow without bound.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from typing import Any, Callable

import bottle

from appliance.api.http.access import bearer
from appliance.api.http.errors import HttpError
from appliance.core import sensors
from appliance.core.config import Settings

WRITES, READS = "writes", "reads"
LIMITED_ROUTES = {("POST", "/kafka/publish"): WRITES, ("GET", "/events/stats"): READS,
                  ("GET", "/events/export"): READS}
MAX_KEYS = 10_000


class TokenBuckets:
    """``rate`` per second, ``burst`` at once, per key."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst = rate, max(1.0, 2 * rate)
        self.clock = clock
        self._buckets: OrderedDict[Any, tuple[float, float]] = OrderedDict()  # key: (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: Any) -> float:
        """0 when ``key`` may go now (and it is counted), else the seconds until it may."""
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
            self._buckets[key] = (tokens - 1 if not wait else tokens, now)
            while len(self._buckets) > MAX_KEYS:
                self._buckets.popitem(last=False)
        return wait


class RateLimitPlugin:
    """Bottle plugin: a limited route checks its client's bucket before it runs."""

    name, api = "ratelimit", 2

    def __init__(self, settings: Settings) -> None:
        rates = {WRITES: settings.rate_limit_writes, READS: settings.rate_limit_reads}
        self.buckets = {kind: TokenBuckets(rate) for kind, rate in rates.items() if rate > 0}

    def apply(self, callback: Callable, route: bottle.Route) -> Callable:
        kind = LIMITED_ROUTES.get((route.method, route.rule))
        buckets = self.buckets.get(kind) if kind else None
        if buckets is None:
            return callback

        def limited(*args: Any, **kwargs: Any) -> Any:
            wait = buckets.take(client_key(bottle.request.environ))
            if wait:
                sensors.on_rate_limited(route.rule)
                raise HttpError(429, f"too many requests: at most {buckets.rate:g} a second",
                                **{"Retry-After": str(max(1, math.ceil(wait)))})
            return callback(*args, **kwargs)
        return limited


def client_key(environ: dict) -> tuple[str, str]:
    """The token offered (its digest: the token itself is not kept), else the client address."""
    offered = bearer(environ.get("HTTP_AUTHORIZATION", ""))
    if offered is not None:
        return "token", hashlib.sha256(offered).hexdigest()
    return "address", environ["sts.client"].user_ip

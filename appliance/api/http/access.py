"""Who may use which route, on which listener: the public plane and the admin plane.

- The **public plane** (PORT) is what callers and load balancers use: GET|HEAD /, /healthz,
  /readyz, /version, /openapi.json, /docs, and the test target (/headers, /status/<code>,
  /delay/<seconds>: routes/target.py). Anyone may use it; it tells a caller about itself only.
- The **admin plane** (ADMIN_ROUTES below: the audit trail, /status, /kafka/*, /metrics) holds
  every other client's addresses and changes state. It is served on ADMIN_PORT (a listener of
  its own, bound to ADMIN_HOST, 127.0.0.1 by default) and on the public port too, as
  ADMIN_ON_PUBLIC_PORT says: ``token`` (the default) asks a token there as on the admin port,
  ``off`` answers 404 there, ``open`` asks no token anywhere (warned about at every start).
- Each admin route needs a token of its scope (schema/tokens.py): read, or write for what
  changes something. /metrics needs none on the admin listener, so Prometheus scrapes it there.

Answers per RFC 6750: no token or an unknown one is a 401 with ``WWW-Authenticate: Bearer``
(``error="invalid_token"`` for an unknown one); a read token on a write route is a 403 with
``error="insufficient_scope"``.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any, Callable

import bottle

from appliance.api.http.errors import HttpError
from appliance.core.config import Settings
from appliance.schema.tokens import READ, WRITE, Tokens

log = logging.getLogger("appliance.api")
PUBLIC, ADMIN = "public", "admin"  # the plane a request came in on: environ["sts.plane"]
REALM = 'Bearer realm="simple-time-service"'
ADMIN_ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/events"): READ, ("GET", "/events/stats"): READ, ("GET", "/events/export"): READ,
    ("GET", "/status"): READ, ("GET", "/kafka/status"): READ, ("GET", "/metrics"): READ,
    ("POST", "/kafka/publish"): WRITE, ("POST", "/kafka/flush"): WRITE,
    ("POST", "/readyz/disable"): WRITE, ("POST", "/readyz/enable"): WRITE,
    ("GET", "/events/dead-letters"): READ, ("GET", "/events/dead-letters/<letter_id:int>"): READ,
    ("POST", "/events/dead-letters/replay"): WRITE,
    ("GET", "/faults"): READ, ("POST", "/faults"): WRITE, ("DELETE", "/faults"): WRITE,
}
OPEN_ON_THE_ADMIN_LISTENER = frozenset({("GET", "/metrics")})


def bearer(header: str) -> bytes | None:
    """The token of ``Authorization: Bearer <token>``, as the bytes the client sent (WSGI hands
    them over as latin-1 text: any byte at all is an answer, never a decoding error)."""
    scheme, _, offered = header.encode("latin-1", "replace").partition(b" ")
    offered = offered.strip()
    return offered if scheme.lower() == b"bearer" and offered else None


def basic_password(header: str) -> bytes | None:
    """The password of ``Authorization: Basic ...``: a browser sends the token so (any user
    name), after the status page's sign-in link asked for it."""
    scheme, _, encoded = header.encode("latin-1", "replace").partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        _, colon, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
    except (binascii.Error, ValueError):
        return None
    return password if colon and password else None


class Access:
    def __init__(self, settings: Settings, tokens: Tokens) -> None:
        self.mode = settings.admin_on_public_port
        self.tokens = tokens

    def viewer_scope(self, authorization: str) -> str | None:
        """What a page viewer's credentials allow: a bearer token, or a browser's Basic
        credentials with the token as the password; None for none or an unknown one."""
        offered = bearer(authorization) or basic_password(authorization)
        return None if offered is None else self.tokens.scope_of(offered)

    def check(self, plane: str, method: str, rule: str, authorization: str) -> None:
        """Pass, or raise the HttpError (401, 403 or 404) this request gets."""
        scope = ADMIN_ROUTES.get((method, rule))
        if scope is None or self.mode == "open":
            return
        if plane == PUBLIC and self.mode == "off":
            raise HttpError(404, f"not found: '{rule}'")
        if plane == ADMIN and (method, rule) in OPEN_ON_THE_ADMIN_LISTENER:
            return
        offered = bearer(authorization)
        if offered is None:
            raise HttpError(401, f"{rule} needs a {scope} token (Authorization: Bearer)",
                            **{"WWW-Authenticate": REALM})
        granted = self.tokens.scope_of(offered)
        if granted is None:
            raise HttpError(401, "unknown token",
                            **{"WWW-Authenticate": f'{REALM}, error="invalid_token"'})
        if scope == WRITE and granted != WRITE:
            raise HttpError(403, f"{rule} needs a write token; this one may only read",
                            **{"WWW-Authenticate": f'{REALM}, error="insufficient_scope", '
                                                   f'scope="write"'})


class AccessPlugin:
    """Bottle plugin: each admin route checks its request before it runs."""

    name, api = "access", 2

    def __init__(self, access: Access) -> None:
        self.access = access

    def apply(self, callback: Callable, route: bottle.Route) -> Callable:
        if (route.method, route.rule) not in ADMIN_ROUTES:
            return callback

        def checked(*args: Any, **kwargs: Any) -> Any:
            environ = bottle.request.environ
            self.access.check(environ.get("sts.plane", PUBLIC), route.method, route.rule,
                              environ.get("HTTP_AUTHORIZATION", ""))
            return callback(*args, **kwargs)
        return checked


def warn_if_open(settings: Settings, where: str) -> None:
    """Say at every start what an open admin plane means, and where the tokens are."""
    if settings.admin_on_public_port == "open":
        log.warning("ADMIN_ON_PUBLIC_PORT=open: anyone who reaches the API reads the audit trail "
                    "(every client's address, path and user agent) and can publish and flush",
                    extra={"port": settings.port})
    else:
        log.info("admin routes need a token", extra={"tokens": where,
                                                     "admin_port": settings.admin_port,
                                                     "on_public_port": settings.admin_on_public_port})
